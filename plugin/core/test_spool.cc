// The sender side of the spool: ingest, durable state across restarts,
// recovery of every kind of bad file, compaction, the doveadm views.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "spool.h"
#include "spool_files.h"
#include "spool_record.h"
#include "spool_writer.h"
#include "test_support.h"
#include "token.h"

extern "C" {
#include <cmocka.h>
}

using namespace cmn;
using cmn::test::ManualClock;
using cmn::test::read_file;
using cmn::test::RecordingSink;
using cmn::test::TempDir;
using cmn::test::write_file;

namespace {

constexpr int64_t kNow = 1700000000000;
constexpr char kQuarantined[] = "chatmail_notify_quarantined";
const std::string kStore = "/home/a/metadata.json";

std::string token(char c, size_t n = 840) { return std::string(n, c); }

// A spool directory with a sender-side Spool that can be "restarted".
struct Fixture {
  TempDir tmp;
  ManualClock clock{kNow};
  RecordingSink events;
  Spool::Options options;
  std::unique_ptr<Spool> spool;

  Fixture() {
    options.dir = tmp.path();
    options.durable = true;
    open_spool();
  }
  void open_spool() {
    spool.reset();
    Status st = Spool::open(options, clock, events, &spool);
    if (!st.ok()) fail_msg("%s", st.message().c_str());
  }
  std::vector<PendingItem> restart() {
    open_spool();
    std::vector<PendingItem> live;
    Status st = spool->recover(&live);
    if (!st.ok()) fail_msg("%s", st.message().c_str());
    return live;
  }
  std::vector<PendingItem> ingest() {
    std::vector<PendingItem> fresh;
    Status st = spool->ingest(&fresh);
    if (!st.ok()) fail_msg("%s", st.message().c_str());
    return fresh;
  }
  ItemPayload payload(uint64_t id) {
    ItemPayload p;
    Status st = spool->payload(id, &p);
    if (!st.ok()) fail_msg("%s", st.message().c_str());
    return p;
  }
  void enqueue(const std::string& addr, const std::vector<std::string>& tokens) {
    SpoolWriter writer(tmp.path(), false);
    std::vector<std::string_view> views(tokens.begin(), tokens.end());
    Status st = writer.enqueue(addr, kStore, views, kNow);
    if (!st.ok()) fail_msg("%s", st.message().c_str());
  }
  std::string incoming(const std::string& name = "") const { return tmp.file("incoming") + (name.empty() ? "" : "/" + name); }
  std::vector<std::string> names(const std::string& sub) const {
    std::vector<std::string> out;
    DIR* d = opendir(tmp.file(sub).c_str());
    while (dirent* e = readdir(d))
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
    closedir(d);
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::string item_record(const std::string& addr, const std::string& tok) {
  SpoolRecord rec;
  rec.start_ms = kNow;
  rec.due_ms = kNow;
  rec.addr = addr;
  rec.store_path = kStore;
  rec.token = tok;
  std::string out;
  encode_record(rec, &out);
  return out;
}

std::string journal(int n) { return "0.1." + std::to_string(n) + ".00ff.journal"; }

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

// Waits (bounded) until `fd` is readable.
bool wait_readable(int fd, int timeout_ms = 10000) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

void ingest_takes_items_and_removes_journals_whose_writer_is_gone(void**) {
  Fixture f;
  assert_true(f.restart().empty());
  SpoolWriter writer(f.tmp.path(), true);
  assert_true(writer.enqueue("a@example.org", kStore, {token('a'), token('b')}, kNow).ok());
  std::vector<PendingItem> fresh = f.ingest();
  assert_int_equal(fresh.size(), 2);
  assert_true(fresh[0].id != fresh[1].id);
  assert_string_equal(fresh[0].addr.c_str(), "a@example.org");
  assert_int_equal(fresh[0].attempt, 0);
  assert_true(fresh[0].due_ms == kNow && fresh[0].start_ms == kNow);
  assert_true(fresh[0].key == item_key(geteuid(), kStore, token('a')));
  ItemPayload p = f.payload(fresh[1].id);
  assert_true(p.token == token('b'));
  assert_string_equal(p.store_path.c_str(), kStore.c_str());
  assert_int_equal(f.names("incoming").size(), 1);  // writer still there
  assert_true(f.ingest().empty());                  // nothing taken twice
  assert_true(writer.enqueue("a@example.org", kStore, {token('c')}, kNow).ok());
  assert_int_equal(f.ingest().size(), 1);
  writer.~SpoolWriter();
  new (&writer) SpoolWriter(f.tmp.path(), true);
  assert_true(f.ingest().empty());
  assert_int_equal(f.names("incoming").size(), 0);
  assert_int_equal(f.events.count_level(CMN_LOG_WARNING), 0);
}

void owner_is_the_uid_of_the_file_not_the_record(void**) {
  if (geteuid() != 0) {
    skip();
    return;
  }
  Fixture f;
  f.restart();
  write_file(f.incoming(journal(1)), item_record("a@example.org", "tok"));  // record claims uid 0
  assert_int_equal(chown(f.incoming(journal(1)).c_str(), 4242, 4242), 0);
  std::vector<PendingItem> fresh = f.ingest();
  assert_int_equal(fresh.size(), 1);
  assert_int_equal(fresh[0].owner_uid, 4242);
  assert_true(fresh[0].key == item_key(4242, kStore, "tok"));
  std::vector<PendingItem> live = f.restart();
  assert_int_equal(live.size(), 1);
  assert_int_equal(live[0].owner_uid, 4242);
}

void attempt_due_and_start_survive_restart(void**) {
  Fixture f;
  f.restart();
  f.enqueue("a@example.org", {token('1'), token('2'), token('3')});
  std::vector<PendingItem> items = f.ingest();
  assert_int_equal(items.size(), 3);
  PendingItem retry = items[0];
  retry.attempt = 2;
  retry.due_ms = kNow + 64000;
  retry.start_ms = kNow - 5;
  assert_true(f.spool->reschedule(retry).ok());
  assert_true(f.spool->finish(items[1].id).ok());
  assert_true(f.spool->sync().ok());

  std::vector<PendingItem> live = f.restart();
  assert_int_equal(live.size(), 2);
  assert_int_equal(live[0].id, items[0].id);
  assert_int_equal(live[0].attempt, 2);
  assert_true(live[0].due_ms == kNow + 64000);
  assert_true(live[0].start_ms == kNow - 5);
  assert_true(live[0].key == items[0].key);
  assert_int_equal(live[1].id, items[2].id);
  assert_int_equal(live[1].attempt, 0);
  assert_true(f.payload(live[0].id).token == token('1'));
  assert_true(f.payload(live[1].id).token == token('3'));
  assert_false(f.spool->payload(items[1].id, nullptr).ok());
  // New ids never reuse old ones.
  f.enqueue("a@example.org", {token('4')});
  std::vector<PendingItem> more = f.ingest();
  assert_true(more[0].id > items[2].id);
  assert_int_equal(f.events.count_name("chatmail_notify_recovered"), 2);
}

void leftover_tmp_of_a_gone_writer_is_removed(void**) {
  Fixture f;
  write_file(f.incoming(".tmp-0.1.2.3.journal"), "half");
  write_file(f.incoming(".tmp-0.1.2.4.journal"), "");
  UniqueFd busy(open(f.incoming(".tmp-0.9.9.9.journal").c_str(), O_CREAT | O_RDWR, 0600));
  assert_int_equal(flock(busy.get(), LOCK_EX), 0);
  write_file(f.tmp.file("state/.tmp-journal.abcd"), "an interrupted compaction");
  f.restart();
  std::vector<std::string> left = f.names("incoming");
  assert_int_equal(left.size(), 1);
  assert_string_equal(left[0].c_str(), ".tmp-0.9.9.9.journal");  // its writer is alive
  assert_int_equal(f.names("state").size(), 1);
  assert_int_equal(f.events.count_level(CMN_LOG_WARNING), 3);
  assert_true(f.events.contains("leftover temporary file"));
  assert_int_equal(f.names("quarantine").size(), 0);
}

void bad_files_are_quarantined_once_and_good_items_still_taken(void**) {
  Fixture f;
  const std::string good = item_record("good@example.org", "tok-good");
  const std::string other = item_record("other@example.org", "tok-other");
  write_file(f.incoming(journal(1)), good);                               // fine
  write_file(f.incoming("notes.txt"), good);                              // bad name
  write_file(f.incoming(journal(2)), "");                                 // empty, no writer
  write_file(f.incoming(journal(3)), "binary \x01\x02 garbage");          // garbage
  std::string bad_crc = other;
  bad_crc[bad_crc.size() - 1] ^= 1;
  write_file(f.incoming(journal(4)), good + bad_crc);                     // good, then bad CRC
  write_file(f.incoming(journal(5)), other + good.substr(0, 20));         // truncated, no writer
  std::string wrong_version = good;
  wrong_version[4] = 7;
  write_file(f.incoming(journal(6)), wrong_version);                      // wrong version
  SpoolRecord done;
  done.type = RecordType::kDone;
  std::string done_record;
  encode_record(done, &done_record);
  write_file(f.incoming(journal(7)), done_record);                        // not an ITEM
  std::vector<PendingItem> live = f.restart();

  std::map<std::string, int> by_addr;
  for (const PendingItem& p : live) by_addr[p.addr]++;
  assert_int_equal(by_addr["good@example.org"], 2);   // journals 1 and 4
  assert_int_equal(by_addr["other@example.org"], 1);  // journal 5
  assert_int_equal(live.size(), 3);
  assert_int_equal(f.events.count_name(kQuarantined), 7);
  assert_int_equal(f.events.count_level(CMN_LOG_WARNING), 7);
  assert_int_equal(f.names("quarantine").size(), 7);
  assert_int_equal(f.names("incoming").size(), 0);
  // Nothing is warned about twice.
  assert_true(f.ingest().empty());
  f.restart();
  assert_int_equal(f.events.count_name(kQuarantined), 7);
}

void non_regular_files_and_hard_links_are_quarantined(void**) {
  Fixture f;
  const std::string good = item_record("good@example.org", "tok");
  write_file(f.tmp.file("outside"), good);
  assert_int_equal(symlink(f.tmp.file("outside").c_str(), f.incoming(journal(1)).c_str()), 0);
  assert_int_equal(mkdir(f.incoming(journal(2)).c_str(), 0700), 0);
  assert_int_equal(mkfifo(f.incoming(journal(3)).c_str(), 0600), 0);
  assert_int_equal(link(f.tmp.file("outside").c_str(), f.incoming(journal(4)).c_str()), 0);
  write_file(f.incoming(journal(5)), good);
  // A name already taken in quarantine/ gets a suffix.
  write_file(f.tmp.file("quarantine/" + journal(1)), "older");
  std::vector<PendingItem> live = f.restart();
  assert_int_equal(live.size(), 1);
  assert_int_equal(f.events.count_name(kQuarantined), 4);
  std::vector<std::string> q = f.names("quarantine");
  assert_int_equal(q.size(), 5);
  assert_true(std::find(q.begin(), q.end(), journal(1) + ".1") != q.end());
  assert_true(read_file(f.tmp.file("outside")) == good);  // a symlink's target is left alone
  struct stat st;
  assert_int_equal(lstat(f.tmp.file("quarantine/" + journal(1) + ".1").c_str(), &st), 0);
  assert_true(S_ISLNK(st.st_mode));
}

void partial_tail_of_a_live_writer_is_waited_for(void**) {
  Fixture f;
  f.restart();
  const std::string first = item_record("a@example.org", "t1");
  const std::string second = item_record("a@example.org", "t2");
  const std::string path = f.incoming(journal(1));
  UniqueFd writer(open(path.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0600));
  assert_int_equal(flock(writer.get(), LOCK_EX), 0);
  const std::string data = first + second.substr(0, 10);
  assert_int_equal(write(writer.get(), data.data(), data.size()), ssize_t(data.size()));
  assert_int_equal(f.ingest().size(), 1);
  assert_int_equal(f.ingest().size(), 0);
  const std::string rest = second.substr(10);
  assert_int_equal(write(writer.get(), rest.data(), rest.size()), ssize_t(rest.size()));
  std::vector<PendingItem> more = f.ingest();
  assert_int_equal(more.size(), 1);
  assert_true(f.payload(more[0].id).token == "t2");
  // A restart meanwhile reads on from the recorded offset: nothing twice.
  assert_int_equal(f.restart().size(), 2);
  writer.reset();
  assert_true(f.ingest().empty());
  assert_int_equal(f.names("incoming").size(), 0);
  assert_int_equal(f.events.count_level(CMN_LOG_WARNING), 0);
}

void truncated_state_tail_is_cut_off(void**) {
  Fixture f;
  f.restart();
  f.enqueue("a@example.org", {"t1", "t2"});
  assert_int_equal(f.ingest().size(), 2);
  const std::string state = f.tmp.file("state/journal");
  const size_t good_size = read_file(state).size();
  UniqueFd fd(open(state.c_str(), O_WRONLY | O_APPEND));
  const std::string half = item_record("x@example.org", "t3").substr(0, 30);
  assert_int_equal(write(fd.get(), half.data(), half.size()), ssize_t(half.size()));
  std::vector<PendingItem> live = f.restart();
  assert_int_equal(live.size(), 2);
  assert_int_equal(f.events.count_level(CMN_LOG_WARNING), 1);
  assert_int_equal(read_file(state).size(), good_size);
}

void corrupt_state_record_is_quarantined_and_the_rest_kept(void**) {
  Fixture f;
  f.restart();
  f.enqueue("a@example.org", {token('1'), token('2'), token('3')});
  std::vector<PendingItem> items = f.ingest();
  const std::string state = f.tmp.file("state/journal");
  std::string data = read_file(state);
  const size_t one = item_record("a@example.org", token('1')).size();
  data[one + 100] ^= 0x55;  // inside the second item's token
  write_file(state, data);
  std::vector<PendingItem> live = f.restart();
  assert_int_equal(live.size(), 2);
  assert_int_equal(live[0].id, items[0].id);
  assert_int_equal(live[1].id, items[2].id);
  assert_true(f.payload(live[1].id).token == token('3'));
  assert_int_equal(f.events.count_name(kQuarantined), 1);
  std::vector<std::string> q = f.names("quarantine");
  assert_int_equal(q.size(), 1);
  assert_true(q[0].starts_with("state."));
  // The journal was rewritten without the bad bytes: no second warning.
  assert_int_equal(f.restart().size(), 2);
  assert_int_equal(f.events.count_name(kQuarantined), 1);
}

void compaction_keeps_exactly_the_live_items(void**) {
  Fixture f;
  f.options.compact_min_bytes = 16 * 1024;
  f.restart();
  std::vector<std::string> tokens;
  for (char c = 'a'; c < 'a' + 20; c++) tokens.push_back(token(c));
  f.enqueue("a@example.org", tokens);
  std::vector<PendingItem> items = f.ingest();
  assert_int_equal(items.size(), 20);
  const std::string state = f.tmp.file("state/journal");
  const size_t before = read_file(state).size();
  for (size_t i = 0; i < 17; i++) assert_true(f.spool->finish(items[i].id).ok());
  PendingItem retry = items[18];
  retry.attempt = 4;
  retry.due_ms = kNow + 4096000;
  assert_true(f.spool->reschedule(retry).ok());
  assert_true(f.spool->sync().ok());
  const size_t after = read_file(state).size();
  assert_true(after < before / 4);
  // Still appendable and readable after the swap.
  assert_true(f.payload(items[19].id).token == tokens[19]);
  assert_true(f.spool->finish(items[17].id).ok());
  assert_true(f.spool->sync().ok());

  std::vector<PendingItem> live = f.restart();
  assert_int_equal(live.size(), 2);
  assert_int_equal(live[0].id, items[18].id);
  assert_int_equal(live[0].attempt, 4);
  assert_true(live[0].due_ms == kNow + 4096000);
  assert_int_equal(live[1].id, items[19].id);
  assert_true(f.payload(items[18].id).token == tokens[18]);
  assert_true(f.payload(items[19].id).token == tokens[19]);
  assert_int_equal(f.events.count_level(CMN_LOG_WARNING), 0);
  for (const std::string& name : f.names("state")) assert_string_equal(name.c_str(), "journal");
}

void watch_fd_wakes_on_new_journals_and_flush_requests(void**) {
  Fixture f;
  f.restart();
  f.spool->clear_watch();
  assert_false(readable(f.spool->watch_fd()));
  f.enqueue("a@example.org", {"t1"});
  assert_true(wait_readable(f.spool->watch_fd()));
  f.spool->clear_watch();
  assert_false(readable(f.spool->watch_fd()));
  assert_true(request_flush(f.tmp.path(), "a@example.org").ok());
  assert_true(request_flush(f.tmp.path(), "").ok());
  assert_true(wait_readable(f.spool->watch_fd()));
  std::vector<std::string> requests = f.spool->take_flush_requests();
  std::sort(requests.begin(), requests.end());
  assert_int_equal(requests.size(), 2);
  assert_string_equal(requests[0].c_str(), "");
  assert_string_equal(requests[1].c_str(), "a@example.org");
  assert_true(f.spool->take_flush_requests().empty());
  assert_int_equal(f.names("control").size(), 0);
}

void status_is_published_and_read_back(void**) {
  Fixture f;
  f.options.max_items = 10;
  f.restart();
  cmn_sender_stats_t stats{};
  stats.enqueued = 5;
  stats.sent = 3;
  stats.pending = 11;
  stats.inflight = 2;
  assert_true(f.spool->publish_status(stats, kNow - 1000).ok());
  assert_int_equal(access(f.tmp.file("full").c_str(), F_OK), 0);
  cmn_spool_status_t status;
  assert_true(read_spool_status(f.tmp.path(), &status).ok());
  assert_int_equal(status.sender_pid, 0);  // nobody holds sender.lock
  assert_true(status.sender_started_ms == kNow - 1000);
  assert_true(status.stats_ms == kNow);
  assert_int_equal(status.stats.enqueued, 5);
  assert_int_equal(status.stats.sent, 3);
  assert_int_equal(status.stats.pending, 11);
  assert_int_equal(status.stats.inflight, 2);

  std::unique_ptr<SenderLock> lock;
  assert_true(SenderLock::acquire(f.tmp.path(), -1, &lock).ok());
  assert_non_null(lock.get());
  assert_true(read_spool_status(f.tmp.path(), &status).ok());
  assert_int_equal(status.sender_pid, getpid());
  lock.reset();
  assert_true(read_spool_status(f.tmp.path(), &status).ok());
  assert_int_equal(status.sender_pid, 0);

  stats.pending = 10;
  assert_true(f.spool->publish_status(stats, kNow).ok());
  assert_int_equal(access(f.tmp.file("full").c_str(), F_OK), -1);

  write_file(f.tmp.file("status"), "{not json");
  Status st = read_spool_status(f.tmp.path(), &status);
  assert_false(st.ok());
  assert_non_null(strstr(st.message().c_str(), "not valid JSON"));
}

void sender_lock_waits_for_the_holder_or_stop(void**) {
  TempDir tmp;
  std::unique_ptr<SenderLock> first;
  assert_true(SenderLock::acquire(tmp.path(), -1, &first).ok());

  // A stop request ends the wait without the lock.
  UniqueFd stop(eventfd(0, EFD_CLOEXEC));
  UniqueFd done(eventfd(0, EFD_CLOEXEC));
  std::unique_ptr<SenderLock> second;
  Status second_status;
  std::thread waiter([&] {
    second_status = SenderLock::acquire(tmp.path(), stop.get(), &second);
    uint64_t one = 1;
    assert_int_equal(write(done.get(), &one, sizeof(one)), 8);
  });
  assert_false(wait_readable(done.get(), 100));  // still waiting
  uint64_t one = 1;
  assert_int_equal(write(stop.get(), &one, sizeof(one)), 8);
  assert_true(wait_readable(done.get()));
  waiter.join();
  assert_true(second_status.ok());
  assert_null(second.get());

  // The holder letting go hands the lock over.
  UniqueFd stop2(eventfd(0, EFD_CLOEXEC));
  UniqueFd done2(eventfd(0, EFD_CLOEXEC));
  std::thread taker([&] {
    second_status = SenderLock::acquire(tmp.path(), stop2.get(), &second);
    uint64_t v = 1;
    assert_int_equal(write(done2.get(), &v, sizeof(v)), 8);
  });
  assert_false(wait_readable(done2.get(), 100));
  first.reset();
  assert_true(wait_readable(done2.get()));
  taker.join();
  assert_true(second_status.ok());
  assert_non_null(second.get());
}

void list_shows_accepted_and_waiting_items_without_tokens(void**) {
  Fixture f;
  f.restart();
  f.enqueue("a@example.org", {"tok-a1", "tok-a2"});
  f.enqueue("b@example.org", {"tok-b1"});
  std::vector<PendingItem> items = f.ingest();
  assert_int_equal(items.size(), 3);
  auto find = [&](const std::string& tok) {
    for (const PendingItem& p : items)
      if (f.payload(p.id).token == tok) return p;
    fail_msg("no item with token %s", tok.c_str());
    return PendingItem{};  // not reached: fail_msg() leaves the test
  };
  PendingItem retry = find("tok-a1");
  retry.attempt = 1;
  retry.due_ms = kNow + 8000;
  f.spool->reschedule(retry);
  f.spool->finish(find("tok-a2").id);
  f.spool->sync();
  f.enqueue("a@example.org", {"tok-a3"});  // not picked up yet

  struct Seen {
    std::string addr, hash;
    unsigned attempt;
    int64_t due_ms;
    int accepted;
  };
  std::vector<Seen> seen;
  auto collect = [&](const cmn_spool_item_info_t& i) {
    seen.push_back(Seen{i.addr, i.token_hash, i.attempt, i.due_ms, i.accepted});
  };
  const std::string before = read_file(f.tmp.file("state/journal"));
  assert_true(list_spool(f.tmp.path(), "a@example.org", collect).ok());
  assert_int_equal(seen.size(), 2);
  assert_string_equal(seen[0].addr.c_str(), "a@example.org");
  assert_string_equal(seen[0].hash.c_str(), token_hash("tok-a1").c_str());
  assert_int_equal(seen[0].attempt, 1);
  assert_true(seen[0].due_ms == kNow + 8000);
  assert_int_equal(seen[0].accepted, 1);
  assert_string_equal(seen[1].hash.c_str(), token_hash("tok-a3").c_str());
  assert_int_equal(seen[1].accepted, 0);
  seen.clear();
  assert_true(list_spool(f.tmp.path(), "", collect).ok());
  assert_int_equal(seen.size(), 3);
  assert_true(read_file(f.tmp.file("state/journal")) == before);  // read-only
  assert_int_equal(f.names("incoming").size(), 1);
  // The C view too.
  int count = 0;
  char* error = nullptr;
  assert_int_equal(cmn_spool_list(f.tmp.path().c_str(), "b@example.org",
                                  [](void* ctx, const cmn_spool_item_info_t*) { ++*static_cast<int*>(ctx); },
                                  &count, &error),
                   0);
  assert_int_equal(count, 1);
}

void directories_are_created_with_safe_modes(void**) {
  TempDir tmp;
  ManualClock clock;
  RecordingSink events;
  Spool::Options options;
  options.dir = tmp.file("spool");
  std::unique_ptr<Spool> spool;
  assert_true(Spool::open(options, clock, events, &spool).ok());
  struct stat st;
  assert_int_equal(stat(tmp.file("spool/incoming").c_str(), &st), 0);
  assert_int_equal(st.st_mode & 07777, geteuid() == 0 ? 01733 : 0700);
  for (const char* sub : {"spool/state", "spool/quarantine", "spool/control"}) {
    assert_int_equal(stat(tmp.file(sub).c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
  }
  assert_int_equal(events.count_level(CMN_LOG_WARNING), 0);
  spool.reset();
  chmod(tmp.file("spool/state").c_str(), 0755);
  assert_true(Spool::open(options, clock, events, &spool).ok());
  assert_int_equal(events.count_level(CMN_LOG_WARNING), 1);
  assert_true(events.contains("looser"));

  options.dir = "relative/spool";
  assert_false(Spool::open(options, clock, events, &spool).ok());
}

void hundred_thousand_items_recover(void**) {
  Fixture f;
  f.options.durable = false;
  f.restart();
  const size_t n = 100000;
  {
    SpoolWriter writer(f.tmp.path(), false);
    std::string tok = token('x');
    for (size_t i = 0; i < n; i++) {
      std::string id = std::to_string(i);
      tok.replace(0, id.size(), id);
      Status st = writer.enqueue("user" + std::to_string(i % 1000) + "@example.org", kStore, {tok}, kNow);
      if (!st.ok()) fail_msg("%s", st.message().c_str());
    }
  }
  assert_int_equal(f.ingest().size(), n);
  std::vector<PendingItem> live = f.restart();
  assert_int_equal(live.size(), n);
  // Every token comes back exactly once (journals are read in name order,
  // so ids do not follow the enqueue order across rotated journals).
  std::vector<bool> seen(n, false);
  for (const PendingItem& p : live) {
    const std::string tok = f.payload(p.id).token;
    assert_int_equal(tok.size(), 840);
    const size_t i = std::stoul(tok.substr(0, tok.find('x')));
    assert_true(i < n && !seen[i]);
    seen[i] = true;
  }
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  fprintf(stderr, "100k items: max RSS %ld KiB (informational)\n", usage.ru_maxrss);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ingest_takes_items_and_removes_journals_whose_writer_is_gone),
      cmocka_unit_test(owner_is_the_uid_of_the_file_not_the_record),
      cmocka_unit_test(attempt_due_and_start_survive_restart),
      cmocka_unit_test(leftover_tmp_of_a_gone_writer_is_removed),
      cmocka_unit_test(bad_files_are_quarantined_once_and_good_items_still_taken),
      cmocka_unit_test(non_regular_files_and_hard_links_are_quarantined),
      cmocka_unit_test(partial_tail_of_a_live_writer_is_waited_for),
      cmocka_unit_test(truncated_state_tail_is_cut_off),
      cmocka_unit_test(corrupt_state_record_is_quarantined_and_the_rest_kept),
      cmocka_unit_test(compaction_keeps_exactly_the_live_items),
      cmocka_unit_test(watch_fd_wakes_on_new_journals_and_flush_requests),
      cmocka_unit_test(status_is_published_and_read_back),
      cmocka_unit_test(sender_lock_waits_for_the_holder_or_stop),
      cmocka_unit_test(list_shows_accepted_and_waiting_items_without_tokens),
      cmocka_unit_test(directories_are_created_with_safe_modes),
      cmocka_unit_test(hundred_thousand_items_recover),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
