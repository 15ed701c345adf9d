// The gateway client against the fake gateway: answers, failures, TLS, and
// how requests share connections.
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gateway_client.h"
#include "test_fake_gateway.h"
#include "test_support.h"

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
}

using namespace cmn;
using cmn::test::FakeGateway;

namespace {

struct Fixture {
  test::TempDir dir;
  std::string tls_dir = dir.file("tls");
};
Fixture* fixture;

int setup_group(void**) {
  if (test::source_root().empty()) {
    print_error("CMN_SOURCE_ROOT is not set (meson test sets it)\n");
    return -1;
  }
  fixture = new Fixture();
  if (!test::make_certificates(fixture->tls_dir)) {
    print_error("make-cert.sh failed\n");
    return -1;
  }
  return 0;
}

int teardown_group(void**) {
  delete fixture;
  return 0;
}

std::unique_ptr<GatewayClient> client_for(const std::string& url, const std::string& ca_file,
                                          int64_t timeout_ms = 10000, unsigned max_inflight = 100) {
  GatewayClient::Options options;
  options.url = url;
  options.ca_file = ca_file;
  options.timeout_ms = timeout_ms;
  options.max_inflight = max_inflight;
  std::unique_ptr<GatewayClient> client;
  Status st = GatewayClient::create(options, &client);
  if (!st.ok()) fail_msg("client: %s", st.message().c_str());
  return client;
}

// Drives the client until `n` results arrived (bounded), keyed by tag.
std::map<uint64_t, GatewayResult> run_until(GatewayClient& client, size_t n, int timeout_ms = 20000) {
  std::map<uint64_t, GatewayResult> results;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<WatchedFd> none;
  while (results.size() < n && std::chrono::steady_clock::now() < deadline) {
    assert_true(client.wait(&none, 100).ok());
    std::vector<GatewayResult> done;
    assert_true(client.perform(&done).ok());
    for (const auto& r : done) results[r.tag] = r;
  }
  if (results.size() < n) fail_msg("only %zu of %zu results within %d ms", results.size(), n, timeout_ms);
  return results;
}

GatewayResult one(GatewayClient& client, const std::string& token) {
  assert_true(client.submit(1, token).ok());
  return run_until(client, 1).at(1);
}

void answers_are_reported_by_status(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir);
  assert_true(gw.running());
  auto client = client_for(gw.url(), gw.ca_file());
  const std::vector<std::pair<std::string, int>> cases = {
      {"plain-token", 200}, {"s410-gone", 410}, {"s500-err", 500}, {"s404-nf", 404}};
  for (size_t i = 0; i < cases.size(); i++) assert_true(client->submit(i, cases[i].first).ok());
  assert_int_equal(client->inflight(), cases.size());
  auto results = run_until(*client, cases.size());
  for (size_t i = 0; i < cases.size(); i++) {
    assert_int_equal(results[i].http_status, cases[i].second);
    assert_string_equal(results[i].error.c_str(), "");
    assert_int_equal(results[i].retry_after_ms, -1);
  }
  assert_int_equal(client->inflight(), 0);
}

void the_body_is_the_raw_token(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir);
  auto client = client_for(gw.url(), gw.ca_file());
  // 4096 bytes: long enough that curl would otherwise wait for 100-continue
  std::string big = "openpgp:" + std::string(4088, 'A');
  auto start = std::chrono::steady_clock::now();
  assert_int_equal(one(*client, big).http_status, 200);
  assert_int_equal(one(*client, "openpgp:abc=").http_status, 200);
  auto elapsed = std::chrono::steady_clock::now() - start;
  assert_true(elapsed < std::chrono::milliseconds(900));  // no Expect: 100-continue pause
  auto reqs = gw.requests();
  assert_int_equal(reqs.size(), 2);
  assert_true(reqs[0]["token"] == big);
  assert_true(reqs[1]["token"] == "openpgp:abc=");
}

void a_hanging_gateway_times_out(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir);
  auto client = client_for(gw.url(), gw.ca_file(), 300);
  GatewayResult r = one(*client, "hang-forever");
  assert_int_equal(r.http_status, 0);
  assert_true(r.error.find("imed out") != std::string::npos);
}

void a_refused_connection_is_an_error(void**) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  assert_int_equal(bind(s, reinterpret_cast<sockaddr*>(&addr), len), 0);
  assert_int_equal(getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(s);  // the port is free and nobody listens
  auto client = client_for("http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/notify", "");
  GatewayResult r = one(*client, "tok");
  assert_int_equal(r.http_status, 0);
  assert_false(r.error.empty());
}

void retry_after_is_read(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir);
  auto client = client_for(gw.url(), gw.ca_file());
  GatewayResult r = one(*client, "s429ra3-slow");
  assert_int_equal(r.http_status, 429);
  assert_int_equal(r.retry_after_ms, 3000);
  r = one(*client, "s503ra120-busy");
  assert_int_equal(r.http_status, 503);
  assert_int_equal(r.retry_after_ms, 120000);
}

void a_redirect_is_not_followed(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir);
  auto client = client_for(gw.url(), gw.ca_file());
  GatewayResult r = one(*client, "redirect-away");
  assert_int_equal(r.http_status, 302);
  assert_int_equal(gw.requests().size(), 1);
}

void an_untrusted_certificate_is_refused(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir);
  auto client = client_for(gw.url(), "");  // the system's CAs do not know the test CA
  GatewayResult r = one(*client, "secret-token");
  assert_int_equal(r.http_status, 0);
  assert_false(r.error.empty());
  assert_int_equal(gw.count_token("secret-token"), 0);
  assert_int_equal(gw.requests().size(), 0);
}

void concurrent_requests_share_one_http2_connection(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir, {"--delay-ms", "200"});
  auto client = client_for(gw.url(), gw.ca_file());
  constexpr size_t kRequests = 50;
  for (size_t i = 0; i < kRequests; i++) assert_true(client->submit(i, "multi-" + std::to_string(i)).ok());
  auto results = run_until(*client, kRequests);
  for (auto& [tag, r] : results) assert_int_equal(r.http_status, 200);
  auto stats = gw.stats();
  assert_int_equal(stats["requests"].get<int>(), kRequests);
  assert_int_equal(stats["connections"].get<int>(), 1);
  assert_int_equal(stats["max_streams_per_connection"].get<int>(), kRequests);
  // they were in flight together, not one after the other
  assert_true(stats["max_concurrent_per_connection"].get<int>() > 10);
  for (const auto& req : gw.requests()) assert_true(req["http_version"] == "2.0");
}

void http1_uses_a_bounded_pool_of_reused_connections(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir, {"--http1-only", "--delay-ms", "100"});
  constexpr unsigned kMaxInflight = 8;
  auto client = client_for(gw.url(), gw.ca_file(), 10000, kMaxInflight);
  const unsigned pool = GatewayClient::max_host_connections(kMaxInflight);
  assert_int_equal(pool, kMaxInflight);
  std::set<int> first_connections;
  for (int round = 0; round < 2; round++) {
    constexpr size_t kRequests = 50;
    for (size_t i = 0; i < kRequests; i++)
      assert_true(client->submit(i, "h1-" + std::to_string(round) + "-" + std::to_string(i)).ok());
    auto results = run_until(*client, kRequests);
    for (auto& [tag, r] : results) assert_int_equal(r.http_status, 200);
    std::set<int> used;
    for (const auto& req : gw.requests()) {
      assert_true(req["http_version"] == "1.1");
      used.insert(req["connection"].get<int>());
    }
    assert_true(used.size() > 1);      // parallel connections
    assert_true(used.size() <= pool);  // but bounded
    if (round == 0) {
      first_connections = used;
      gw.reset();
    } else {
      for (int c : used) assert_true(first_connections.count(c) == 1);  // kept alive and reused
    }
  }
}

// The pool must not be what bounds the rate: one connection per request in
// flight (a pool of 16 held 100 requests at 320/s with a 50 ms gateway).
void the_http1_pool_follows_max_inflight(void**) {
  assert_int_equal(GatewayClient::max_host_connections(100), 100);
  assert_int_equal(GatewayClient::max_host_connections(500), 500);
  assert_int_equal(GatewayClient::max_host_connections(0), 1);
}

// More requests than one connection's 1,000-stream life under Node's
// rapid-reset guard (libcurl 7.88 resets every finished stream): the
// connection is replaced by ONE new connection at a time, never a burst.
void http2_replaces_a_closed_connection_with_one(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir);
  auto client = client_for(gw.url(), gw.ca_file());
  constexpr size_t kRequests = 2500;
  constexpr size_t kWindow = 100;
  size_t submitted = 0;
  std::map<uint64_t, GatewayResult> results;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<WatchedFd> none;
  while (results.size() < kRequests && std::chrono::steady_clock::now() < deadline) {
    while (submitted < kRequests && client->inflight() < kWindow) {
      assert_true(client->submit(submitted, "many-" + std::to_string(submitted)).ok());
      submitted++;
    }
    assert_true(client->wait(&none, 100).ok());
    std::vector<GatewayResult> done;
    assert_true(client->perform(&done).ok());
    for (const auto& r : done) results[r.tag] = r;
  }
  assert_int_equal(results.size(), kRequests);
  size_t ok = 0;
  for (auto& [tag, r] : results) ok += r.http_status == 200;
  assert_true(ok >= kRequests - 5);  // a stream cut twice by a GOAWAY may fail
  // never two connections at once: each opened after the one before closed
  auto reqs = gw.requests();
  std::map<int, std::pair<int64_t, int64_t>> span;  // connection -> first, last arrival
  for (const auto& req : reqs) {
    assert_true(req["http_version"] == "2.0");
    int c = req["connection"].get<int>();
    int64_t t = req["time_ms"].get<int64_t>();
    auto it = span.find(c);
    if (it == span.end()) span[c] = {t, t};
    else it->second.second = std::max(it->second.second, t);
  }
  int64_t previous_last = -1;
  for (auto& [c, s] : span) {
    assert_true(s.first >= previous_last);  // connection ids grow with time
    previous_last = s.second;
  }
  assert_true(span.size() <= kRequests / 900 + 1);
}

// A request cut off without an answer is sent again at once, but only once.
void a_transport_failure_is_retried_once_at_once(void**) {
  FakeGateway gw(fixture->dir.path(), fixture->tls_dir);
  auto client = client_for(gw.url(), gw.ca_file());
  assert_int_equal(one(*client, "warmup").http_status, 200);
  gw.set_mode(R"({"close": true})");
  GatewayResult r = one(*client, "cut-off");
  assert_int_equal(r.http_status, 0);
  assert_false(r.error.empty());
  const size_t sent = gw.count_token("cut-off");
  print_message("requests for a token whose connection is always cut: %zu (%s)\n", sent, r.error.c_str());
  assert_true(sent >= 2);
  assert_true(sent <= 4);  // ours once; libcurl's own retry of a dead reused connection once each
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(answers_are_reported_by_status),
      cmocka_unit_test(the_body_is_the_raw_token),
      cmocka_unit_test(a_hanging_gateway_times_out),
      cmocka_unit_test(a_refused_connection_is_an_error),
      cmocka_unit_test(retry_after_is_read),
      cmocka_unit_test(a_redirect_is_not_followed),
      cmocka_unit_test(an_untrusted_certificate_is_refused),
      cmocka_unit_test(concurrent_requests_share_one_http2_connection),
      cmocka_unit_test(http1_uses_a_bounded_pool_of_reused_connections),
      cmocka_unit_test(the_http1_pool_follows_max_inflight),
      cmocka_unit_test(http2_replaces_a_closed_connection_with_one),
      cmocka_unit_test(a_transport_failure_is_retried_once_at_once),
  };
  return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
