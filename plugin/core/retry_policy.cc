#include "retry_policy.h"

#include <cmath>
#include <limits>

namespace cmn {

Status RetryPolicy::validate(int64_t base_ms, int64_t deadline_ms) {
  if (base_ms <= 1000)
    return Status::error("chatmail_notify_backoff_base must be longer than 1s (got " +
                         std::to_string(base_ms) + "ms): the delays base^n would not grow");
  if (deadline_ms <= 0)
    return Status::error("chatmail_notify_deadline must be longer than 0");
  return Status();
}

uint32_t RetryPolicy::max_attempts() const {
  double base_s = double(base_ms_) / 1000.0;
  double deadline_s = double(deadline_ms_) / 1000.0;
  if (base_s <= 1.0 || deadline_s < 1.0) return 1;
  // The seed: int(math.log(DROP_DEADLINE, BASE_DELAY)) + 1. A tiny epsilon
  // keeps exact powers (deadline 64 s, base 8 s) from losing one to rounding.
  double levels = std::floor(std::log(deadline_s) / std::log(base_s) + 1e-9);
  return uint32_t(std::min(levels, 1000.0)) + 1;
}

bool RetryPolicy::next_due(const PendingItem& item, int64_t now_ms, int64_t retry_after_ms,
                           int64_t* due_ms) const {
  const uint32_t failures = item.attempt + 1;  // the attempt that just failed counts
  if (failures >= max_attempts()) return false;

  // base^failures seconds, saturating: beyond the deadline it drops anyway.
  constexpr int64_t kFar = std::numeric_limits<int64_t>::max() / 4;
  double delay = double(base_ms_) * std::pow(double(base_ms_) / 1000.0, double(failures - 1));
  int64_t delay_ms = delay >= double(kFar) ? kFar : int64_t(delay);
  if (retry_after_ms > delay_ms) delay_ms = std::min(retry_after_ms, kFar);

  const int64_t due = now_ms + delay_ms;
  if (due > item.start_ms + deadline_ms_) return false;
  *due_ms = due;
  return true;
}

}  // namespace cmn
