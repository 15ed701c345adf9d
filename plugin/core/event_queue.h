// Events from worker threads, held until the host's thread drains them.
// The host polls fd(); it is readable while events wait.
#pragma once
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

#include "event_sink.h"

namespace cmn {

class EventQueue final : public EventSink {
 public:
  EventQueue();  // aborts only if an eventfd cannot be made; see ok()
  ~EventQueue() override;
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void emit(Event event) override;
  // Runs `fn` for each waiting event on the caller's thread; returns how many.
  size_t drain(const std::function<void(const Event&)>& fn);

 private:
  static constexpr size_t kMaxQueued = 10000;  // beyond: counted, then one summary
  std::mutex mutex_;
  std::deque<Event> events_;
  size_t overflowed_ = 0;
  int fd_ = -1;
};

}  // namespace cmn
