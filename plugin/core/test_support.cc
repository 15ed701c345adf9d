#include "test_support.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace cmn::test {

int64_t ManualClock::now_ms() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return now_ms_;
}

void ManualClock::set(int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  now_ms_ = now_ms;
}

void ManualClock::advance(int64_t delta_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  now_ms_ += delta_ms;
}

void RecordingSink::emit(Event event) {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back(std::move(event));
}

std::vector<Event> RecordingSink::events() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_;
}

size_t RecordingSink::count_level(cmn_log_level level) const {
  size_t n = 0;
  for (const Event& e : events()) n += e.level == level;
  return n;
}

size_t RecordingSink::count_name(const std::string& name) const {
  size_t n = 0;
  for (const Event& e : events()) n += e.name == name;
  return n;
}

bool RecordingSink::contains(const std::string& needle) const {
  for (const Event& e : events())
    if (e.message.find(needle) != std::string::npos) return true;
  return false;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base != nullptr ? base : "/tmp") + "/cmn-test-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

}  // namespace cmn::test
