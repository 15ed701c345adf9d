// The sender end to end: the real spool, schedule and gateway client
// against the fake gateway, with a clock the test moves.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sender.h"
#include "spool.h"
#include "spool_writer.h"
#include "test_fake_gateway.h"
#include "test_support.h"
#include "token.h"

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
}

using namespace cmn;
using cmn::test::FakeGateway;
using cmn::test::wait_until;

namespace {

constexpr int kWaitMs = 15000;
constexpr int64_t kSec = 1000;

// The sender owns its clock; this one follows a ManualClock the test keeps.
class FollowingClock final : public Clock {
 public:
  explicit FollowingClock(const test::ManualClock& clock) : clock_(clock) {}
  int64_t now_ms() const override { return clock_.now_ms(); }

 private:
  const test::ManualClock& clock_;
};

std::string* tls_dir;
test::TempDir* cert_dir;

int setup_group(void**) {
  if (test::source_root().empty()) {
    print_error("CMN_SOURCE_ROOT is not set (meson test sets it)\n");
    return -1;
  }
  cert_dir = new test::TempDir();
  tls_dir = new std::string(cert_dir->file("tls"));
  return test::make_certificates(*tls_dir) ? 0 : -1;
}

int teardown_group(void**) {
  delete tls_dir;
  delete cert_dir;
  return 0;
}

// One test's world: a spool, a gateway, a clock, and the sender under test.
struct World {
  test::TempDir dir;
  test::ManualClock clock;
  FakeGateway gateway;
  std::string spool_dir = dir.file("spool");
  SpoolWriter writer{spool_dir, false};
  SenderConfig config;
  std::unique_ptr<Sender> sender;
  std::vector<Event> events;

  explicit World(const std::vector<std::string>& gateway_args = {})
      : gateway(dir.path(), *tls_dir, gateway_args) {
    if (!gateway.running()) fail_msg("the fake gateway did not start");
    if (::mkdir(spool_dir.c_str(), 0700) != 0) fail_msg("mkdir %s failed", spool_dir.c_str());
    config.url = gateway.url();
    config.ca_file = gateway.ca_file();
    config.spool_dir = spool_dir;
    config.backoff_base_ms = 2 * kSec;
    config.deadline_ms = 3600 * kSec;
    config.timeout_ms = 10 * kSec;
    config.durable = false;
  }
  ~World() {
    if (sender) sender->stop(10000);
  }

  void start() {
    ::unlink((spool_dir + "/status").c_str());
    Status st = Sender::start(config, std::make_unique<FollowingClock>(clock), &sender);
    if (!st.ok()) fail_msg("sender start: %s", st.message().c_str());
    // It publishes its status once the spool is open and recovered.
    if (!wait_until([&] { return ::access((spool_dir + "/status").c_str(), F_OK) == 0; }, kWaitMs)) {
      drain();
      for (const Event& e : events) print_error("event: %s\n", e.message.c_str());
      fail_msg("the sender did not publish its status within %d ms", kWaitMs);
    }
  }
  bool stop(int64_t timeout_ms) {
    drain();
    bool in_time = sender->stop(timeout_ms);
    drain();
    sender.reset();
    return in_time;
  }
  void enqueue(const std::string& addr, const std::vector<std::string_view>& tokens,
               const std::string& store = "") {
    Status st = writer.enqueue(addr, store, tokens, clock.now_ms());
    if (!st.ok()) fail_msg("enqueue: %s", st.message().c_str());
  }
  // Moves the clock and makes the loop look at it again (a flush request
  // that matches no item wakes it).
  void advance(int64_t ms) {
    clock.advance(ms);
    Status st = request_flush(spool_dir, "nobody@wake.invalid");
    if (!st.ok()) fail_msg("flush request: %s", st.message().c_str());
  }
  void drain() {
    if (sender) sender->events().drain([&](const Event& e) { events.push_back(e); });
  }
  cmn_sender_stats_t stats() { return sender->stats(); }
  bool wait_stat(uint64_t cmn_sender_stats_t::*field, uint64_t value) {
    return wait_until([&] { return stats().*field == value; }, kWaitMs);
  }
  bool wait_requests(const std::string& token, size_t n) {
    return wait_until([&] { return gateway.count_token(token) == n; }, kWaitMs);
  }
  // The counters move just before the spool's records are written: wait
  // until the spool shows `n` items (the first at `attempt`, when >= 0).
  std::vector<cmn_spool_item_info_t> wait_spool(size_t n, int attempt = -1) {
    std::vector<cmn_spool_item_info_t> items;
    if (!wait_until([&] {
          items = spool_items();
          return items.size() == n && (attempt < 0 || items[0].attempt == unsigned(attempt));
        }, kWaitMs))
      fail_msg("the spool holds %zu items (attempt %d), expected %zu (attempt %d)", items.size(),
               items.empty() ? -1 : int(items[0].attempt), n, attempt);
    return items;
  }
  std::vector<cmn_spool_item_info_t> spool_items() {
    std::vector<cmn_spool_item_info_t> items;
    Status st = list_spool(spool_dir, "", [&](const cmn_spool_item_info_t& i) {
      cmn_spool_item_info_t copy = i;
      copy.addr = nullptr;
      copy.token_hash = nullptr;
      items.push_back(copy);
    });
    if (!st.ok()) fail_msg("list_spool: %s", st.message().c_str());
    return items;
  }
  std::vector<Event> named(const std::string& name) {
    drain();
    std::vector<Event> out;
    for (const Event& e : events)
      if (e.name == name) out.push_back(e);
    return out;
  }
};

#define assert_waited(cond) \
  do {                      \
    if (!(cond)) fail_msg("not within %d ms: %s", kWaitMs, #cond); \
  } while (0)

void every_device_of_a_recipient_gets_a_push(void**) {
  World w;
  w.start();
  w.enqueue("alice@example.org", {"dev-1", "dev-2", "dev-3"});
  assert_waited(w.wait_stat(&cmn_sender_stats_t::sent, 3));
  auto reqs = w.gateway.requests();
  assert_int_equal(reqs.size(), 3);
  for (int i = 0; i < 3; i++) assert_true(reqs[i]["token"] == "dev-" + std::to_string(i + 1));
  auto finished = w.named("chatmail_notify_send_finished");
  assert_int_equal(finished.size(), 3);
  for (const Event& e : finished) {
    assert_int_equal(e.http_status, 200);
    assert_int_equal(e.attempt, 0);
    assert_string_equal(e.addr.c_str(), "alice@example.org");
    assert_int_equal(e.token_hash.size(), kTokenHashLen);
    assert_true(e.message.find("dev-") == std::string::npos);  // never the token itself
  }
  assert_waited(w.wait_stat(&cmn_sender_stats_t::pending, 0));
  w.wait_spool(0);
}

void a_gone_token_is_removed_from_the_store_alone(void**) {
  World w;
  const std::string store = w.dir.file("metadata.json");
  test::write_file(store, "{\"devicetoken\": {\"s410-old\": " + std::to_string(w.clock.now_ms() / 1000) +
                              ", \"keep-new\": " + std::to_string(w.clock.now_ms() / 1000) +
                              "}, \"other\": 7}");
  w.start();
  w.enqueue("bob@example.org", {"s410-old", "keep-new"}, store);
  assert_waited(w.wait_stat(&cmn_sender_stats_t::gone, 1));
  assert_waited(w.wait_stat(&cmn_sender_stats_t::sent, 1));
  auto json = nlohmann::json::parse(test::read_file(store));
  assert_false(json["devicetoken"].contains("s410-old"));
  assert_true(json["devicetoken"].contains("keep-new"));
  assert_int_equal(json["other"].get<int>(), 7);
  auto removed = w.named("chatmail_notify_token_removed");
  assert_int_equal(removed.size(), 1);
  assert_string_equal(removed[0].token_hash.c_str(), token_hash("s410-old").c_str());
  assert_int_equal(w.gateway.count_token("s410-old"), 1);  // not retried
}

void failures_are_retried_at_each_level_then_succeed(void**) {
  World w;
  w.start();
  const int64_t start = w.clock.now_ms();
  w.enqueue("carol@example.org", {"fail4x-c"});
  for (uint32_t failures = 1; failures <= 4; failures++) {
    assert_waited(w.wait_stat(&cmn_sender_stats_t::retried, failures));
    auto items = w.wait_spool(1, int(failures));
    const int64_t delay = (int64_t(2) << (failures - 1)) * kSec;  // 2, 4, 8, 16 s
    assert_int_equal(items[0].due_ms, w.clock.now_ms() + delay);
    assert_int_equal(items[0].start_ms, start);
    assert_int_equal(w.gateway.count_token("fail4x-c"), failures);
    w.advance(delay);
    assert_waited(w.wait_requests("fail4x-c", failures + 1));
  }
  assert_waited(w.wait_stat(&cmn_sender_stats_t::sent, 1));
  auto finished = w.named("chatmail_notify_send_finished");
  assert_int_equal(finished.size(), 5);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(finished[i].attempt, i);
    assert_int_equal(finished[i].http_status, i < 4 ? 500 : 200);
  }
  w.wait_spool(0);
}

void an_item_is_dropped_at_the_deadline(void**) {
  World w;
  w.config.deadline_ms = 10 * kSec;  // attempts at +0, +2, +6; +14 is too late
  w.start();
  w.enqueue("dave@example.org", {"s500-d"});
  assert_waited(w.wait_stat(&cmn_sender_stats_t::retried, 1));
  w.advance(2 * kSec);
  assert_waited(w.wait_stat(&cmn_sender_stats_t::retried, 2));
  w.advance(4 * kSec);
  assert_waited(w.wait_stat(&cmn_sender_stats_t::dropped, 1));
  assert_int_equal(w.gateway.count_token("s500-d"), 3);
  auto dropped = w.named("chatmail_notify_dropped");
  assert_int_equal(dropped.size(), 1);
  assert_int_equal(dropped[0].level, CMN_LOG_ERROR);
  assert_string_equal(dropped[0].addr.c_str(), "dave@example.org");
  w.wait_spool(0);
}

void stop_is_bounded_with_a_request_hanging(void**) {
  World w;
  w.config.timeout_ms = 120 * kSec;
  w.start();
  w.enqueue("erin@example.org", {"hang-e"});
  assert_waited(w.wait_requests("hang-e", 1));
  assert_waited(w.wait_stat(&cmn_sender_stats_t::inflight, 1));
  auto begin = std::chrono::steady_clock::now();
  assert_true(w.stop(5000));
  assert_true(std::chrono::steady_clock::now() - begin < std::chrono::seconds(5));
  auto items = w.spool_items();
  assert_int_equal(items.size(), 1);  // it stays, unchanged
  assert_int_equal(items[0].attempt, 0);
}

void stop_while_waiting_for_the_lock(void**) {
  World w;
  w.start();
  SenderConfig second_config = w.config;
  std::unique_ptr<Sender> second;
  assert_true(Sender::start(second_config, std::make_unique<FollowingClock>(w.clock), &second).ok());
  w.enqueue("frank@example.org", {"only-once"});
  assert_waited(w.wait_stat(&cmn_sender_stats_t::sent, 1));
  assert_int_equal(second->stats().enqueued, 0);  // it never got the spool
  assert_true(second->stop(5000));
  assert_int_equal(w.gateway.count_token("only-once"), 1);
}

void items_survive_a_restart_with_their_attempt(void**) {
  World w;
  w.start();
  w.enqueue("grace@example.org", {"fail1x-g"});
  assert_waited(w.wait_stat(&cmn_sender_stats_t::retried, 1));
  assert_true(w.stop(5000));
  auto items = w.spool_items();
  assert_int_equal(items.size(), 1);
  assert_int_equal(items[0].attempt, 1);

  w.events.clear();
  w.start();
  // not due yet: nothing is sent at start
  w.advance(2 * kSec);
  assert_waited(w.wait_stat(&cmn_sender_stats_t::sent, 1));
  auto finished = w.named("chatmail_notify_send_finished");
  assert_int_equal(finished.size(), 1);
  assert_int_equal(finished[0].attempt, 1);
  assert_int_equal(w.gateway.count_token("fail1x-g"), 2);
}

// A request that gets no HTTP answer (here: the gateway drops the
// connection; in the retry storm an HTTP/2 stream error) is put on the wire
// again at once by the gateway client; only when that fails too does the
// item spend a retry level. (Before, one stream error in an item's third
// attempt put it base^3 = 512 s away, long after the gateway was back.)
void a_request_without_answer_is_sent_again_at_once_then_costs_a_level(void**) {
  World w;
  w.start();
  const int64_t start = w.clock.now_ms();
  w.enqueue("ivan@example.org", {"fail1x-i"});
  assert_waited(w.wait_stat(&cmn_sender_stats_t::retried, 1));  // a 500
  w.gateway.set_mode("{\"close\": true}");
  w.advance(2 * kSec);
  assert_waited(w.wait_requests("fail1x-i", 3));  // and its immediate resend
  assert_waited(w.wait_stat(&cmn_sender_stats_t::retried, 2));
  auto items = w.wait_spool(1, 2);
  assert_int_equal(items[0].due_ms, w.clock.now_ms() + 4 * kSec);
  assert_int_equal(items[0].start_ms, start);
  w.gateway.set_mode("{}");
  w.advance(4 * kSec);
  assert_waited(w.wait_stat(&cmn_sender_stats_t::sent, 1));
  assert_int_equal(w.gateway.count_token("fail1x-i"), 4);
  auto finished = w.named("chatmail_notify_send_finished");
  assert_int_equal(finished.size(), 3);
  const int statuses[] = {500, 0, 200};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(finished[i].http_status, statuses[i]);
    assert_int_equal(finished[i].attempt, i);
  }
  w.wait_spool(0);
}

void pushes_for_one_token_coalesce_during_an_outage(void**) {
  World w;
  w.gateway.set_mode("{\"status\": 500}");
  w.start();
  w.enqueue("heidi@example.org", {"co-h"});
  assert_waited(w.wait_stat(&cmn_sender_stats_t::retried, 1));
  for (int i = 0; i < 9; i++) w.enqueue("heidi@example.org", {"co-h"});
  assert_waited(w.wait_stat(&cmn_sender_stats_t::coalesced, 9));
  w.wait_spool(1);
  w.gateway.set_mode("{}");
  w.advance(2 * kSec);
  assert_waited(w.wait_stat(&cmn_sender_stats_t::sent, 1));
  assert_waited(w.wait_stat(&cmn_sender_stats_t::pending, 0));
  assert_int_equal(w.gateway.count_token("co-h"), 2);  // the failed one and one after recovery
  w.wait_spool(0);
}

void a_missing_spool_folder_is_made_at_the_first_start(void**) {
  World w;
  assert_int_equal(::rmdir(w.spool_dir.c_str()), 0);
  w.start();  // waits for the sender's status in the new folder
  w.enqueue("ivan@example.org", {"fresh-i"});
  assert_waited(w.wait_stat(&cmn_sender_stats_t::sent, 1));
}

void bad_settings_are_refused_by_name(void**) {
  SenderConfig c;
  c.backoff_base_ms = 1000;
  Status st = c.validate();
  assert_false(st.ok());
  assert_true(st.message().find("chatmail_notify_backoff_base") != std::string::npos);
  c = SenderConfig();
  c.url = "ftp://x";
  assert_true(c.validate().message().find("chatmail_notify_url") != std::string::npos);
  c = SenderConfig();
  c.spool_dir = "relative";
  assert_true(c.validate().message().find("chatmail_notify_spool_dir") != std::string::npos);
  c = SenderConfig();
  c.max_inflight = 0;
  assert_true(c.validate().message().find("chatmail_notify_max_inflight") != std::string::npos);
  c = SenderConfig();
  c.timeout_ms = 0;
  assert_true(c.validate().message().find("chatmail_notify_timeout") != std::string::npos);
  assert_true(SenderConfig().validate().ok());
  std::unique_ptr<Sender> sender;
  c.timeout_ms = 0;
  assert_false(Sender::start(c, nullptr, &sender).ok());
  assert_null(sender.get());
  c = SenderConfig();
  c.spool_dir = "/nonexistent/chatmail-notify-spool";
  st = Sender::start(c, nullptr, &sender);
  assert_true(st.message().find("chatmail_notify_spool_dir /nonexistent") != std::string::npos);
  assert_null(sender.get());
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_device_of_a_recipient_gets_a_push),
      cmocka_unit_test(a_gone_token_is_removed_from_the_store_alone),
      cmocka_unit_test(failures_are_retried_at_each_level_then_succeed),
      cmocka_unit_test(an_item_is_dropped_at_the_deadline),
      cmocka_unit_test(stop_is_bounded_with_a_request_hanging),
      cmocka_unit_test(stop_while_waiting_for_the_lock),
      cmocka_unit_test(items_survive_a_restart_with_their_attempt),
      cmocka_unit_test(pushes_for_one_token_coalesce_during_an_outage),
      cmocka_unit_test(a_request_without_answer_is_sent_again_at_once_then_costs_a_level),
      cmocka_unit_test(a_missing_spool_folder_is_made_at_the_first_start),
      cmocka_unit_test(bad_settings_are_refused_by_name),
  };
  return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
