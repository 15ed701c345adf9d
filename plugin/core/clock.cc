#include "clock.h"

#include <ctime>

namespace cmn {

int64_t SystemClock::now_ms() const {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace cmn
