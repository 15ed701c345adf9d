#include "event_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace cmn {

EventQueue::EventQueue() { fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

EventQueue::~EventQueue() {
  if (fd_ >= 0) close(fd_);
}

void EventQueue::emit(Event event) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (events_.size() >= kMaxQueued) {
    overflowed_++;
    return;
  }
  events_.push_back(std::move(event));
  if (fd_ >= 0) {
    uint64_t one = 1;
    // EAGAIN only when the counter is at its maximum: it is readable then.
    ssize_t ignored = write(fd_, &one, sizeof(one));
    (void)ignored;
  }
}

size_t EventQueue::drain(const std::function<void(const Event&)>& fn) {
  std::deque<Event> taken;
  size_t overflowed = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    taken.swap(events_);
    overflowed = overflowed_;
    overflowed_ = 0;
    if (fd_ >= 0) {
      uint64_t count;
      ssize_t ignored = read(fd_, &count, sizeof(count));
      (void)ignored;
    }
  }
  if (overflowed > 0) {
    Event summary;
    summary.level = CMN_LOG_WARNING;
    summary.name = "chatmail_notify_events_lost";
    summary.message = std::to_string(overflowed) + " log events were lost: more than " +
                      std::to_string(kMaxQueued) + " waited to be logged";
    summary.count = int64_t(overflowed);
    taken.push_back(std::move(summary));
  }
  for (const Event& e : taken) fn(e);
  return taken.size();
}

}  // namespace cmn
