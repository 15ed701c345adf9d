// When to try again: the seed's schedule (base^n seconds after the n-th
// failure, a deadline from the first enqueue), plus Retry-After.
#pragma once
#include <cstdint>

#include "spool.h"
#include "status.h"

namespace cmn {

class RetryPolicy {
 public:
  RetryPolicy(int64_t base_ms, int64_t deadline_ms) : base_ms_(base_ms), deadline_ms_(deadline_ms) {}
  static Status validate(int64_t base_ms, int64_t deadline_ms);

  // floor(ln(deadline)/ln(base)) + 1, both in seconds (5 for 8s / 5h).
  uint32_t max_attempts() const;
  // Item's attempt number `item.attempt` just failed at `now_ms`. Sets
  // *due_ms and returns true, or returns false: drop it (deadline or
  // attempts exhausted). retry_after_ms >= 0 is the gateway's Retry-After.
  bool next_due(const PendingItem& item, int64_t now_ms, int64_t retry_after_ms,
                int64_t* due_ms) const;

 private:
  int64_t base_ms_;
  int64_t deadline_ms_;
};

}  // namespace cmn
