// Shared pieces of the core's unit tests.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "clock.h"
#include "event_sink.h"

namespace cmn::test {

// A clock that only moves when the test says so.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_ms = 1700000000000) : now_ms_(now_ms) {}
  int64_t now_ms() const override;
  void set(int64_t now_ms);
  void advance(int64_t delta_ms);

 private:
  mutable std::mutex mutex_;
  int64_t now_ms_;
};

// Keeps every event for assertions.
class RecordingSink final : public EventSink {
 public:
  void emit(Event event) override;
  std::vector<Event> events() const;
  size_t count_level(cmn_log_level level) const;
  size_t count_name(const std::string& name) const;
  // True if any message contains `needle`.
  bool contains(const std::string& needle) const;

 private:
  mutable std::mutex mutex_;
  std::vector<Event> events_;
};

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);

}  // namespace cmn::test
