// POSTs tokens to the push gateway through libcurl's multi interface: HTTP/2
// multiplexed on one connection when the gateway offers it by ALPN, a
// bounded pool of HTTP/1.1 keep-alive connections otherwise. Not
// thread-safe: one thread (the sender's loop) owns a client.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace cmn {

struct GatewayResult {
  uint64_t tag = 0;             // as given to submit()
  int http_status = 0;          // 0: no HTTP answer
  std::string error;            // curl's reason when there was no usable answer
  int64_t retry_after_ms = -1;  // the answer's Retry-After, -1 when absent
};

struct WatchedFd {
  int fd = -1;
  bool ready = false;  // set by GatewayClient::wait()
};

class GatewayClient {
 public:
  struct Options {
    std::string url;
    std::string ca_file;  // empty: the system's CAs
    int64_t timeout_ms = 60000;
    unsigned max_inflight = 100;
  };
  static Status create(const Options& options, std::unique_ptr<GatewayClient>* out);
  ~GatewayClient();
  GatewayClient(const GatewayClient&) = delete;
  GatewayClient& operator=(const GatewayClient&) = delete;

  // Starts a POST of `token`; its result comes back with `tag`.
  Status submit(uint64_t tag, std::string_view token);
  // Sleeps until a transfer needs attention, one of `fds` is readable
  // (marked ready) or timeout_ms passed (-1: no limit of our own).
  Status wait(std::vector<WatchedFd>* fds, int timeout_ms);
  // Moves the transfers forward and appends the finished ones to *done.
  Status perform(std::vector<GatewayResult>* done);
  // Abandons every transfer in flight; no result comes for them.
  void abort_all();
  size_t inflight() const;

  // Why the HTTP/1.1 pool holds at most this many connections: see .cc.
  static unsigned max_host_connections(unsigned max_inflight);

 private:
  struct Impl;
  explicit GatewayClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cmn
