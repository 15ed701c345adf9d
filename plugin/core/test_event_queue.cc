// Events from worker threads reach the host's thread, in order, without a flood.
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include <cmocka.h>
}

#include "event_queue.h"

using namespace cmn;

namespace {

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

Event numbered(int thread, int n) {
  Event e;
  e.name = "test";
  e.message = std::to_string(thread) + ":" + std::to_string(n);
  e.attempt = n;
  e.http_status = thread;
  return e;
}

void the_fd_is_readable_only_while_events_wait(void**) {
  EventQueue queue;
  assert_true(queue.ok());
  assert_false(readable(queue.fd(), 0));
  queue.emit(numbered(0, 0));
  assert_true(readable(queue.fd(), 0));
  std::vector<std::string> seen;
  assert_int_equal(queue.drain([&](const Event& e) { seen.push_back(e.message); }), 1);
  assert_string_equal(seen.at(0).c_str(), "0:0");
  assert_false(readable(queue.fd(), 0));
  assert_int_equal(queue.drain([](const Event&) {}), 0);
}

void events_of_many_threads_arrive_in_order_per_thread(void**) {
  EventQueue queue;
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++)
    threads.emplace_back([&queue, t] {
      for (int n = 0; n < kEach; n++) queue.emit(numbered(t, n));
    });
  std::atomic<bool> emitted{false};
  std::map<int, int> next;  // thread -> next expected number
  size_t total = 0;
  std::thread joiner([&] {
    for (auto& th : threads) th.join();
    emitted = true;
  });
  // Drain on this thread while they emit, waking on the fd.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (total < size_t(kThreads) * kEach && std::chrono::steady_clock::now() < deadline) {
    if (!readable(queue.fd(), 100)) continue;
    total += queue.drain([&](const Event& e) {
      assert_int_equal(e.attempt, next[e.http_status]);
      next[e.http_status]++;
    });
  }
  joiner.join();
  assert_true(emitted);
  assert_int_equal(total, kThreads * kEach);
  for (int t = 0; t < kThreads; t++) assert_int_equal(next[t], kEach);
}

void overflow_becomes_one_summary(void**) {
  EventQueue queue;
  constexpr int kEmitted = 10000 + 2500;
  for (int n = 0; n < kEmitted; n++) queue.emit(numbered(0, n));
  size_t plain = 0;
  std::vector<Event> summaries;
  size_t drained = queue.drain([&](const Event& e) {
    if (e.name == "test") plain++;
    else summaries.push_back(e);
  });
  assert_int_equal(plain, 10000);
  assert_int_equal(summaries.size(), 1);
  assert_int_equal(drained, 10001);
  assert_string_equal(summaries[0].name.c_str(), "chatmail_notify_events_lost");
  assert_int_equal(summaries[0].count, 2500);
  assert_int_equal(summaries[0].level, CMN_LOG_WARNING);
  // the next drain starts afresh
  queue.emit(numbered(0, 0));
  assert_int_equal(queue.drain([](const Event& e) { assert_string_equal(e.name.c_str(), "test"); }), 1);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_fd_is_readable_only_while_events_wait),
      cmocka_unit_test(events_of_many_threads_arrive_in_order_per_thread),
      cmocka_unit_test(overflow_becomes_one_summary),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
