// Where core components report log lines and named events.
#pragma once
#include <cstdint>
#include <string>

extern "C" {
#include "chatmail-notify.h"
}

namespace cmn {

struct Event {
  cmn_log_level level = CMN_LOG_INFO;
  std::string name;  // empty: a plain log line
  std::string message;
  std::string addr;
  std::string token_hash;
  int http_status = -1;
  int attempt = -1;
  int64_t count = -1;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // May be called from any core thread; implementations are thread-safe.
  virtual void emit(Event event) = 0;
};

// Discards everything (tools that have nowhere to report).
class NullEventSink final : public EventSink {
 public:
  void emit(Event) override {}
};

}  // namespace cmn
