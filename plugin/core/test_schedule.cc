// The due-time queue: order, limit, no head-of-line blocking, coalescing.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <map>
#include <random>
#include <set>
#include <string>

#include "schedule.h"

extern "C" {
#include <cmocka.h>
}

using namespace cmn;

namespace {

PendingItem item(uint64_t id, int64_t due_ms, const std::string& token = "",
                 const std::string& addr = "a@example.org", uint32_t attempt = 0) {
  PendingItem p;
  p.id = id;
  p.owner_uid = 1000;
  p.attempt = attempt;
  p.start_ms = due_ms;
  p.due_ms = due_ms;
  p.addr = addr;
  p.key = item_key(1000, "/store/" + addr, token.empty() ? "token" + std::to_string(id) : token);
  return p;
}

void take_due_returns_earliest_first_and_only_due(void**) {
  Schedule s;
  assert_false(s.add(item(1, 300), nullptr));
  assert_false(s.add(item(2, 100), nullptr));
  assert_false(s.add(item(3, 200), nullptr));
  assert_false(s.add(item(4, 1000), nullptr));
  assert_int_equal(*s.next_due_ms(), 100);
  std::vector<PendingItem> due = s.take_due(300, 10);
  assert_int_equal(due.size(), 3);
  assert_int_equal(due[0].id, 2);
  assert_int_equal(due[1].id, 3);
  assert_int_equal(due[2].id, 1);
  assert_int_equal(s.waiting(), 1);
  assert_int_equal(s.inflight(), 3);
  assert_int_equal(*s.next_due_ms(), 1000);
  assert_true(s.take_due(999, 10).empty());
}

void take_due_respects_the_limit(void**) {
  Schedule s;
  for (uint64_t id = 1; id <= 10; id++) s.add(item(id, int64_t(id)), nullptr);
  assert_int_equal(s.take_due(100, 4).size(), 4);
  assert_int_equal(s.take_due(100, 0).size(), 0);
  std::vector<PendingItem> rest = s.take_due(100, 100);
  assert_int_equal(rest.size(), 6);
  assert_int_equal(rest[0].id, 5);
  assert_false(s.next_due_ms().has_value());
}

void retries_do_not_block_first_attempts(void**) {
  Schedule s;
  s.add(item(1, 5000, "", "a@example.org", 3), nullptr);  // a retry far ahead
  s.add(item(2, 10), nullptr);
  std::vector<PendingItem> due = s.take_due(10, 1);
  assert_int_equal(due.size(), 1);
  assert_int_equal(due[0].id, 2);
  std::map<uint32_t, size_t> by_attempt = s.waiting_by_attempt();
  assert_int_equal(by_attempt[3], 1);
  assert_int_equal(by_attempt.count(0), 0);
}

void same_key_joins_the_waiting_item_and_extends_start(void**) {
  Schedule s;
  PendingItem first = item(1, 100, "tok");
  first.due_ms = 500;
  assert_false(s.add(first, nullptr));
  PendingItem joined;
  PendingItem second = item(2, 300, "tok");
  assert_true(s.add(second, &joined));
  assert_int_equal(joined.id, 1);
  assert_int_equal(joined.start_ms, 300);
  assert_int_equal(joined.due_ms, 500);
  assert_int_equal(s.waiting(), 1);
  // An older item joining does not move start back.
  assert_true(s.add(item(3, 50, "tok"), &joined));
  assert_int_equal(joined.start_ms, 300);
  std::vector<PendingItem> due = s.take_due(500, 10);
  assert_int_equal(due.size(), 1);
  assert_int_equal(due[0].start_ms, 300);
}

void different_keys_do_not_join(void**) {
  Schedule s;
  s.add(item(1, 100, "tok"), nullptr);
  assert_false(s.add(item(2, 100, "other"), nullptr));
  assert_false(s.add(item(3, 100, "tok", "b@example.org"), nullptr));
  assert_int_equal(s.waiting(), 3);
}

void in_flight_items_are_not_joined(void**) {
  Schedule s;
  s.add(item(1, 100, "tok"), nullptr);
  assert_int_equal(s.take_due(100, 10).size(), 1);
  PendingItem joined;
  joined.id = 999;
  assert_false(s.add(item(2, 150, "tok"), &joined));
  assert_int_equal(joined.id, 999);
  assert_int_equal(s.waiting(), 1);
  assert_int_equal(s.inflight(), 1);
}

void requeue_joins_a_newer_waiting_item(void**) {
  Schedule s;
  s.add(item(1, 100, "tok"), nullptr);
  std::vector<PendingItem> due = s.take_due(100, 10);
  s.add(item(2, 150, "tok"), nullptr);  // arrives while 1 is in flight
  PendingItem retry = due[0];
  retry.attempt = 1;
  retry.due_ms = 8100;
  PendingItem joined;
  assert_true(s.requeue(retry, &joined));
  assert_int_equal(joined.id, 2);
  assert_int_equal(joined.start_ms, 150);
  assert_int_equal(s.inflight(), 0);
  assert_int_equal(s.waiting(), 1);
}

void requeue_without_match_waits_with_new_due(void**) {
  Schedule s;
  s.add(item(1, 100), nullptr);
  PendingItem p = s.take_due(100, 1)[0];
  p.attempt = 1;
  p.due_ms = 8100;
  assert_false(s.requeue(p, nullptr));
  assert_int_equal(*s.next_due_ms(), 8100);
  assert_true(s.take_due(8099, 10).empty());
  std::vector<PendingItem> due = s.take_due(8100, 10);
  assert_int_equal(due.size(), 1);
  assert_int_equal(due[0].attempt, 1);
}

void finish_forgets_the_item(void**) {
  Schedule s;
  s.add(item(1, 100, "tok"), nullptr);
  s.take_due(100, 1);
  s.finish(1);
  assert_int_equal(s.inflight(), 0);
  assert_false(s.add(item(2, 200, "tok"), nullptr));  // nothing left to join
  s.finish(2);                                          // a waiting one too
  assert_int_equal(s.waiting(), 0);
  assert_false(s.next_due_ms().has_value());
}

void make_due_by_address_or_all(void**) {
  Schedule s;
  s.add(item(1, 9000, "", "a@example.org"), nullptr);
  s.add(item(2, 9000, "", "b@example.org"), nullptr);
  s.add(item(3, 9500, "", "a@example.org"), nullptr);
  assert_int_equal(s.make_due(10, "a@example.org"), 2);
  std::vector<PendingItem> due = s.take_due(10, 10);
  assert_int_equal(due.size(), 2);
  assert_int_equal(due[0].id, 1);
  assert_int_equal(due[1].id, 3);
  assert_int_equal(s.make_due(20, ""), 1);
  assert_int_equal(s.take_due(20, 10)[0].id, 2);
}

void hundred_thousand_items(void**) {
  Schedule s;
  const uint64_t n = 100000;
  for (uint64_t id = 1; id <= n; id++) s.add(item(id, int64_t((id * 7919) % n)), nullptr);
  assert_int_equal(s.waiting(), n);
  int64_t last = -1;
  size_t taken = 0;
  for (;;) {
    std::vector<PendingItem> due = s.take_due(int64_t(n), 1000);
    if (due.empty()) break;
    for (const PendingItem& p : due) {
      assert_true(p.due_ms >= last);
      last = p.due_ms;
      s.finish(p.id);
    }
    taken += due.size();
  }
  assert_int_equal(taken, n);
}


// The sender's use of the schedule through a retry storm, step by step:
// steady arrivals with repeated tokens, every answer a 500 for a while,
// joins with waiting items while others of the same token are in flight.
// Afterwards every token must have been answered 200 after its last
// arrival, and nothing may be left waiting or in flight.
void a_retry_storm_leaves_nothing_behind(void**) {
  Schedule s;
  std::mt19937 rng(12345);
  const int64_t outage_from = 10000, outage_to = 70000, load_to = 80000;
  const int64_t base = 8000, deadline = 5LL * 3600 * 1000;
  std::map<uint64_t, PendingItem> flying;       // id -> item, answered after a delay
  std::map<uint64_t, int64_t> answer_at;        // id -> when its answer comes
  std::map<std::string, int64_t> last_arrival;  // token -> time
  std::map<std::string, int64_t> last_ok;       // token -> time of its last 200
  std::map<uint64_t, std::string> token_of;     // every live id
  std::set<uint64_t> finished;
  uint64_t next_id = 1;
  const size_t max_inflight = 100;
  auto absorb = [&](uint64_t gone, const PendingItem& joined) {
    assert_true(token_of.count(joined.id) == 1);
    assert_true(finished.insert(gone).second);
    token_of.erase(gone);
  };
  for (int64_t now = 0; now < load_to + 700000; now += 5) {
    if (now < load_to && now % 5 == 0) {  // 200 items/s, 1,000 tokens
      const std::string token = "t" + std::to_string(rng() % 1000);
      PendingItem p = item(next_id++, now, token);
      token_of[p.id] = token;
      last_arrival[token] = now;
      PendingItem joined;
      if (s.add(p, &joined)) absorb(p.id, joined);
    }
    for (auto it = answer_at.begin(); it != answer_at.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      PendingItem p = flying.at(it->first);
      flying.erase(it->first);
      it = answer_at.erase(it);
      const bool ok = now < outage_from || now >= outage_to;
      if (ok) {
        last_ok[token_of.at(p.id)] = now;
        s.finish(p.id);
        assert_true(finished.insert(p.id).second);
        token_of.erase(p.id);
        continue;
      }
      const int64_t delay = p.attempt == 0 ? base : p.attempt == 1 ? base * 8 : base * 64;
      assert_true(now + delay <= p.start_ms + deadline);
      p.attempt++;
      p.due_ms = now + delay;
      PendingItem joined;
      if (s.requeue(p, &joined)) absorb(p.id, joined);
    }
    const size_t room = max_inflight - flying.size();
    for (const PendingItem& p : s.take_due(now, room)) {
      assert_true(token_of.count(p.id) == 1);  // not finished or absorbed
      assert_true(flying.emplace(p.id, p).second);  // not in flight twice
      answer_at[p.id] = now + 20 + int64_t(rng() % 50);
    }
    assert_int_equal(s.inflight(), flying.size());
  }
  assert_int_equal(s.waiting(), 0);
  assert_int_equal(s.inflight(), 0);
  assert_true(token_of.empty());
  for (const auto& [token, when] : last_arrival) {
    assert_true(last_ok.count(token) == 1);
    assert_true(last_ok[token] >= when);
  }
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(take_due_returns_earliest_first_and_only_due),
      cmocka_unit_test(take_due_respects_the_limit),
      cmocka_unit_test(retries_do_not_block_first_attempts),
      cmocka_unit_test(same_key_joins_the_waiting_item_and_extends_start),
      cmocka_unit_test(different_keys_do_not_join),
      cmocka_unit_test(in_flight_items_are_not_joined),
      cmocka_unit_test(requeue_joins_a_newer_waiting_item),
      cmocka_unit_test(requeue_without_match_waits_with_new_due),
      cmocka_unit_test(finish_forgets_the_item),
      cmocka_unit_test(make_due_by_address_or_all),
      cmocka_unit_test(hundred_thousand_items),
      cmocka_unit_test(a_retry_storm_leaves_nothing_behind),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
