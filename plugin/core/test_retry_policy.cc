// The retry schedule: the seed's base^n back-off, its attempt limit and
// deadline, and the gateway's Retry-After.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cstring>

#include "retry_policy.h"
#include "test_support.h"

extern "C" {
#include <cmocka.h>
}

using namespace cmn;

namespace {

constexpr int64_t kSec = 1000;
constexpr int64_t kHour = 3600 * kSec;

PendingItem item_at(int64_t start_ms, uint32_t attempt) {
  PendingItem item;
  item.id = 1;
  item.start_ms = start_ms;
  item.attempt = attempt;
  return item;
}

void defaults_allow_five_attempts(void**) {
  assert_int_equal(RetryPolicy(8 * kSec, 5 * kHour).max_attempts(), 5);
  assert_int_equal(RetryPolicy(2 * kSec, 64 * kSec).max_attempts(), 7);
  assert_int_equal(RetryPolicy(8 * kSec, 7 * kSec).max_attempts(), 1);
}

void each_failure_waits_base_to_the_nth(void**) {
  test::ManualClock clock;
  RetryPolicy policy(8 * kSec, 5 * kHour);
  const int64_t start = clock.now_ms();
  const int64_t expected[] = {8 * kSec, 64 * kSec, 512 * kSec, 4096 * kSec};
  int64_t now = start;
  for (uint32_t attempt = 0; attempt < 4; attempt++) {
    int64_t due = 0;
    assert_true(policy.next_due(item_at(start, attempt), now, -1, &due));
    assert_int_equal(due - now, expected[attempt]);
    now = due;
  }
  int64_t due = 0;
  assert_false(policy.next_due(item_at(start, 4), now, -1, &due));
}

void small_base_levels_for_tests(void**) {
  test::ManualClock clock;
  RetryPolicy policy(2 * kSec, 1 * kHour);
  const int64_t start = clock.now_ms();
  int64_t now = start;
  for (uint32_t attempt = 0; attempt < 4; attempt++) {
    int64_t due = 0;
    assert_true(policy.next_due(item_at(start, attempt), now, -1, &due));
    assert_int_equal(due - now, (int64_t(2) << attempt) * kSec);
    now = due;
  }
}

void an_attempt_past_the_deadline_drops(void**) {
  test::ManualClock clock;
  RetryPolicy policy(2 * kSec, 10 * kSec);  // 4 attempts by count: 0, +2, +4, +8
  const int64_t start = clock.now_ms();
  int64_t due = 0;
  assert_true(policy.next_due(item_at(start, 0), start, -1, &due));
  assert_int_equal(due, start + 2 * kSec);
  assert_true(policy.next_due(item_at(start, 1), start + 2 * kSec, -1, &due));
  assert_int_equal(due, start + 6 * kSec);
  // the third failure at +6 s would wait 8 s: +14 s is past start + 10 s
  assert_false(policy.next_due(item_at(start, 2), start + 6 * kSec, -1, &due));
  // exactly on the deadline is still in time
  assert_true(policy.next_due(item_at(start, 2), start + 2 * kSec, -1, &due));
  assert_int_equal(due, start + 10 * kSec);
}

void retry_after_is_honoured(void**) {
  RetryPolicy policy(2 * kSec, 1 * kHour);
  const int64_t start = 1700000000000;
  int64_t due = 0;
  assert_true(policy.next_due(item_at(start, 0), start, 30 * kSec, &due));
  assert_int_equal(due, start + 30 * kSec);
  // shorter than the back-off: the back-off still applies
  assert_true(policy.next_due(item_at(start, 0), start, 500, &due));
  assert_int_equal(due, start + 2 * kSec);
}

void retry_after_past_the_deadline_drops(void**) {
  RetryPolicy policy(2 * kSec, 1 * kHour);
  const int64_t start = 1700000000000;
  int64_t due = 0;
  assert_false(policy.next_due(item_at(start, 0), start + 10 * kSec, 1 * kHour, &due));
  assert_true(policy.next_due(item_at(start, 0), start + 10 * kSec, 1 * kHour - 10 * kSec, &due));
  assert_int_equal(due, start + 1 * kHour);
}

void huge_levels_do_not_overflow(void**) {
  RetryPolicy policy(8 * kSec, 5 * kHour);
  int64_t due = 0;
  const int64_t start = 1700000000000;
  assert_false(policy.next_due(item_at(start, 4000000000u), start, -1, &due));
  assert_false(policy.next_due(item_at(start, 0), start, INT64_MAX, &due));
  RetryPolicy wide(3600 * kSec, 100000LL * 365 * 24 * kHour);
  assert_true(wide.next_due(item_at(start, 1), start, -1, &due));
  assert_int_equal(due - start, 3600LL * 3600 * kSec);
}

void a_base_of_one_second_or_less_is_refused(void**) {
  Status st = RetryPolicy::validate(1000, 5 * kHour);
  assert_false(st.ok());
  assert_non_null(strstr(st.message().c_str(), "chatmail_notify_backoff_base"));
  assert_false(RetryPolicy::validate(0, 5 * kHour).ok());
  assert_false(RetryPolicy::validate(-8000, 5 * kHour).ok());
  assert_false(RetryPolicy::validate(8000, 0).ok());
  assert_true(RetryPolicy::validate(1001, 1).ok());
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults_allow_five_attempts),
      cmocka_unit_test(each_failure_waits_base_to_the_nth),
      cmocka_unit_test(small_base_levels_for_tests),
      cmocka_unit_test(an_attempt_past_the_deadline_drops),
      cmocka_unit_test(retry_after_is_honoured),
      cmocka_unit_test(retry_after_past_the_deadline_drops),
      cmocka_unit_test(huge_levels_do_not_overflow),
      cmocka_unit_test(a_base_of_one_second_or_less_is_refused),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
