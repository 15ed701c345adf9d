// Time source of the core, injected so tests control it.
#pragma once
#include <cstdint>

namespace cmn {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t now_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override;
};

// A clock the host supplies through the C ABI (tests, benchmarks).
class CallbackClock final : public Clock {
 public:
  CallbackClock(int64_t (*fn)(void*), void* ctx) : fn_(fn), ctx_(ctx) {}
  int64_t now_ms() const override { return fn_(ctx_); }

 private:
  int64_t (*fn_)(void*);
  void* ctx_;
};

}  // namespace cmn
