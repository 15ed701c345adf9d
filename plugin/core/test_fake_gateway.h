// The fake push gateway (tests/gateway/fake-gateway.js) as a test fixture:
// started on a free port, inspected through its control endpoints.
#pragma once
#include <curl/curl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace cmn::test {

inline std::string source_root() {
  const char* root = std::getenv("CMN_SOURCE_ROOT");
  return root != nullptr ? root : "";
}

// Polls `cond` every few ms until it holds or `timeout_ms` passed.
inline bool wait_until(const std::function<bool()>& cond, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A CA and a certificate for 127.0.0.1 in `dir` (make-cert.sh).
inline bool make_certificates(const std::string& dir) {
  std::string cmd = "sh '" + source_root() + "/tests/gateway/make-cert.sh' '" + dir + "'";
  return std::system(cmd.c_str()) == 0;
}

class FakeGateway {
 public:
  // `tls_dir` holds ca.pem/cert.pem/key.pem, or is empty for plain HTTP.
  FakeGateway(const std::string& work_dir, const std::string& tls_dir,
              const std::vector<std::string>& extra_args = {})
      : tls_dir_(tls_dir) {
    std::string port_file = work_dir + "/gateway-port-" + std::to_string(++instances());
    std::vector<std::string> args = {"node", source_root() + "/tests/gateway/fake-gateway.js",
                                     "--port", "0", "--port-file", port_file};
    if (!tls_dir.empty())
      args.insert(args.end(), {"--tls", "--cert", tls_dir + "/cert.pem", "--key", tls_dir + "/key.pem"});
    for (auto& a : extra_args) args.push_back(a);
    pid_ = fork();
    if (pid_ == 0) {
      // A failed test leaves by longjmp, past destructors: do not outlive it.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("node", argv.data());
      _exit(127);
    }
    wait_until([&] {
      std::ifstream in(port_file);
      return bool(in >> port_) && port_ > 0;
    }, 15000);
  }
  ~FakeGateway() { stop(); }
  FakeGateway(const FakeGateway&) = delete;
  FakeGateway& operator=(const FakeGateway&) = delete;

  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  bool running() const { return port_ > 0; }
  int port() const { return port_; }
  std::string base() const {
    return std::string(tls_dir_.empty() ? "http" : "https") + "://127.0.0.1:" + std::to_string(port_);
  }
  std::string url() const { return base() + "/notify"; }
  std::string ca_file() const { return tls_dir_.empty() ? "" : tls_dir_ + "/ca.pem"; }

  nlohmann::json control(const std::string& path, const std::string* post_body = nullptr) const {
    CURL* e = curl_easy_init();
    std::string body;
    const std::string target = base() + path;
    curl_easy_setopt(e, CURLOPT_URL, target.c_str());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    if (!tls_dir_.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, ca_file().c_str());
    if (post_body != nullptr) curl_easy_setopt(e, CURLOPT_POSTFIELDS, post_body->c_str());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* ctx) {
      static_cast<std::string*>(ctx)->append(d, s * n);
      return s * n;
    });
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK) return nlohmann::json();
    return nlohmann::json::parse(body, nullptr, false);
  }
  nlohmann::json requests() const { return control("/control/requests"); }
  nlohmann::json stats() const { return control("/control/stats"); }
  void set_mode(const std::string& json) const { control("/control/mode", &json); }
  void reset() const {
    std::string empty;
    control("/control/reset", &empty);
  }
  // Requests that carried `token`.
  size_t count_token(const std::string& token) const {
    size_t n = 0;
    nlohmann::json all = requests();
    if (!all.is_array()) return 0;
    for (const auto& r : all) n += r.value("token", "") == token;
    return n;
  }

 private:
  static int& instances() {
    static int n = 0;
    return n;
  }
  std::string tls_dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace cmn::test
