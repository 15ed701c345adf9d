// The sender: one event-loop thread that ingests spool items, keeps the
// schedule and drives libcurl's multi interface.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "clock.h"
#include "event_queue.h"
#include "status.h"

extern "C" {
#include "chatmail-notify.h"
}

namespace cmn {

struct SenderConfig {
  std::string url = "https://notifications.delta.chat/notify";
  std::string spool_dir = "/var/spool/dovecot-chatmail-notify";
  std::string ca_file;  // empty: system CAs
  int64_t backoff_base_ms = 8000;
  int64_t deadline_ms = 5LL * 3600 * 1000;
  int64_t timeout_ms = 60000;
  unsigned max_inflight = 100;
  bool durable = true;
  uint64_t max_items = 1000000;  // spool cap; 0 = none

  Status validate() const;
};

class Sender {
 public:
  static Status start(const SenderConfig& config, std::unique_ptr<Clock> clock,
                      std::unique_ptr<Sender>* out);
  virtual ~Sender() = default;

  virtual EventQueue& events() = 0;
  virtual cmn_sender_stats_t stats() const = 0;
  // Joins every thread; returns false when it took longer than timeout_ms.
  virtual bool stop(int64_t timeout_ms) = 0;
};

}  // namespace cmn
