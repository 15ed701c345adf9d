// metadata.json as chatmail relays keep it: order, refresh, expiry, the
// legacy list, unknown keys, bad files, ownership, locking, crash safety.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include <cmocka.h>
}

#include "test_support.h"
#include "token.h"
#include "token_store.h"

using namespace cmn;
using cmn::test::ManualClock;
using cmn::test::read_file;
using cmn::test::RecordingSink;
using cmn::test::TempDir;
using cmn::test::write_file;
using Json = nlohmann::ordered_json;

namespace {

constexpr uid_t kOtherUid = 65534;
constexpr int64_t kSecond = 1000;

struct Fixture {
  TempDir dir;
  ManualClock clock;
  RecordingSink sink;
  TokenStoreOptions options;
  std::string path = dir.file("metadata.json");

  TokenStore store() { return TokenStore(path, options, clock, sink); }

  std::vector<std::string> tokens() {
    std::vector<StoredToken> listed;
    Status st = store().list(&listed);
    if (!st.ok()) fail_msg("list failed: %s", st.message().c_str());
    std::vector<std::string> out;
    for (const StoredToken& t : listed) out.push_back(t.token);
    return out;
  }

  void add(const std::string& token) {
    Status st = store().add(token);
    if (!st.ok()) fail_msg("add failed: %s", st.message().c_str());
  }

  Json file() { return Json::parse(read_file(path)); }
  bool exists(const std::string& name) { return access(dir.file(name).c_str(), F_OK) == 0; }
};

void expect_tokens(Fixture& f, const std::vector<std::string>& expected) {
  std::vector<std::string> got = f.tokens();
  std::string got_text, expected_text;
  for (const std::string& t : got) got_text += t + " ";
  for (const std::string& t : expected) expected_text += t + " ";
  if (got != expected)
    fail_msg("tokens: expected [%s], got [%s]", expected_text.c_str(), got_text.c_str());
}

std::vector<std::string> keys(const Json& object) {
  std::vector<std::string> out;
  for (const auto& [key, value] : object.items()) out.push_back(key);
  return out;
}

// Entries of the test folder other than the store and its lock.
std::vector<std::string> strays(Fixture& f) {
  std::vector<std::string> out;
  DIR* d = opendir(f.dir.path().c_str());
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != ".." && name != "metadata.json" && name != "metadata.json.lock")
      out.push_back(name);
  }
  closedir(d);
  return out;
}

void missing_file_is_empty_and_costs_no_lock(void**) {
  Fixture f;
  expect_tokens(f, {});
  assert_int_equal(f.sink.events().size(), 0);
  assert_false(f.exists("metadata.json.lock"));
  bool removed = true;
  assert_true(f.store().remove("abc", &removed).ok());
  assert_false(removed);
  assert_false(f.exists("metadata.json"));
}

void add_keeps_devices_in_insertion_order(void**) {
  Fixture f;
  f.add("device-1");
  f.clock.advance(5 * kSecond);
  f.add("device-2");
  f.clock.advance(5 * kSecond);
  f.add("device-3");
  expect_tokens(f, {"device-1", "device-2", "device-3"});
  Json file = f.file();
  assert_true((keys(file["devicetoken"]) == std::vector<std::string>{"device-1", "device-2", "device-3"}));
  assert_int_equal(file["devicetoken"]["device-1"].get<int64_t>(), 1700000000);
  assert_int_equal(file["devicetoken"]["device-3"].get<int64_t>(), 1700000010);
  assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 0);
}

void refresh_keeps_position_and_updates_time(void**) {
  Fixture f;
  f.add("first");
  f.add("second");
  f.clock.advance(100 * kSecond);
  f.add("first");
  std::vector<StoredToken> listed;
  assert_true(f.store().list(&listed).ok());
  assert_int_equal(listed.size(), 2);
  assert_string_equal(listed[0].token.c_str(), "first");
  assert_int_equal(listed[0].refreshed_ms, 1700000100000);
  assert_int_equal(listed[1].refreshed_ms, 1700000000000);
  assert_true((keys(f.file()["devicetoken"]) == std::vector<std::string>{"first", "second"}));
}

void identical_token_again_is_no_duplicate(void**) {
  Fixture f;
  f.add("same-token");
  f.add("same-token");
  f.add("same-token");
  expect_tokens(f, {"same-token"});
  assert_int_equal(f.file()["devicetoken"].size(), 1);
}

void expired_tokens_are_skipped_then_dropped(void**) {
  Fixture f;
  f.options.ttl_ms = 1000 * kSecond;
  f.add("old");
  f.clock.advance(500 * kSecond);
  f.add("young");
  f.clock.advance(600 * kSecond);
  expect_tokens(f, {"young"});
  assert_true(f.file()["devicetoken"].contains("old"));  // list does not write
  f.add("new");
  assert_false(f.file()["devicetoken"].contains("old"));
  expect_tokens(f, {"young", "new"});

  // Like the relay, a time well in the future is not a valid one.
  write_file(f.path, R"({"devicetoken": {"future": 1700003600, "now": 1700001100}})");
  expect_tokens(f, {"now"});

  f.options.ttl_ms = 0;  // never expire
  write_file(f.path, R"({"devicetoken": {"ancient": 1}})");
  expect_tokens(f, {"ancient"});
}

// Ten thousand writes test the policy, not the disk: on tmpfs their fsyncs
// are free (elsewhere they take a minute).
class TmpdirOnTmpfs {
 public:
  TmpdirOnTmpfs() {
    const char* old = getenv("TMPDIR");
    if (old != nullptr) old_ = old;
    had_ = old != nullptr;
    if (access("/dev/shm", W_OK) == 0) setenv("TMPDIR", "/dev/shm", 1);
  }
  ~TmpdirOnTmpfs() {
    if (had_)
      setenv("TMPDIR", old_.c_str(), 1);
    else
      unsetenv("TMPDIR");
  }

 private:
  bool had_ = false;
  std::string old_;
};

void max_tokens_keeps_the_newest(void**) {
  TmpdirOnTmpfs tmpfs;
  Fixture f;
  f.options.max_tokens = 32;
  for (int i = 0; i < 10000; i++) {
    f.clock.advance(kSecond);
    f.add("tok" + std::to_string(i));
  }
  std::vector<std::string> expected;
  for (int i = 10000 - 32; i < 10000; i++) expected.push_back("tok" + std::to_string(i));
  expect_tokens(f, expected);
  assert_int_equal(f.file()["devicetoken"].size(), 32);
  assert_true(f.sink.contains("oldest tokens beyond max_tokens=32"));
}

void max_tokens_never_drops_the_token_just_added(void**) {
  Fixture f;
  f.options.max_tokens = 2;
  f.add("a");  // all in the same second
  f.add("b");
  f.add("c");
  expect_tokens(f, {"b", "c"});
  // A refreshed token becomes the newest.
  f.clock.advance(kSecond);
  f.add("b");
  f.clock.advance(kSecond);
  f.add("d");
  expect_tokens(f, {"b", "d"});
  // Even when the others carry times from a clock a little ahead.
  write_file(f.path, R"({"devicetoken": {"x": 1700000050, "y": 1700000050}})");
  f.add("e");
  expect_tokens(f, {"y", "e"});
}

void legacy_list_is_read_and_rewritten_as_map(void**) {
  Fixture f;
  write_file(f.path, R"({"other": 1, "devicetoken": ["t1", "t2", "t1"]})");
  std::vector<StoredToken> listed;
  assert_true(f.store().list(&listed).ok());
  assert_int_equal(listed.size(), 2);
  assert_string_equal(listed[0].token.c_str(), "t1");
  assert_string_equal(listed[1].token.c_str(), "t2");
  assert_int_equal(listed[1].refreshed_ms, f.clock.now_ms());  // fresh
  assert_true(f.file()["devicetoken"].is_array());  // reading changes nothing

  f.clock.advance(10 * kSecond);
  f.add("t3");
  Json file = f.file();
  assert_true(file["devicetoken"].is_object());
  assert_true((keys(file) == std::vector<std::string>{"other", "devicetoken"}));
  assert_true((keys(file["devicetoken"]) == std::vector<std::string>{"t1", "t2", "t3"}));
  assert_int_equal(file["devicetoken"]["t1"].get<int64_t>(), 1700000010);
  assert_int_equal(f.sink.count_level(CMN_LOG_INFO), 1);
  assert_true(f.sink.contains("legacy"));
  assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 0);
}

void unknown_keys_are_kept_untouched(void**) {
  Fixture f;
  const std::string original = R"({"zeta": {"nested": [1, {"x": null, "y": [true, 2.5]}], "s": "é"},
    "devicetoken": {"t1": 1700000000}, "alpha": "text", "n": -7, "f": 1.25, "e": {}})";
  write_file(f.path, original);
  f.add("t2");
  Json before = Json::parse(original);
  Json after = f.file();
  assert_true((keys(after) == std::vector<std::string>{"zeta", "devicetoken", "alpha", "n", "f", "e"}));
  for (const char* key : {"zeta", "alpha", "n", "f", "e"})
    if (after[key] != before[key]) fail_msg("key %s changed: %s", key, after[key].dump().c_str());
  assert_true((keys(after["zeta"]) == std::vector<std::string>{"nested", "s"}));
  expect_tokens(f, {"t1", "t2"});
}

void corrupt_json_reads_empty_once_and_add_moves_it_aside(void**) {
  Fixture f;
  const std::string corrupt = R"({"devicetoken": {"secret-token-1": 17000)";
  write_file(f.path, corrupt);
  expect_tokens(f, {});
  assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 1);
  Event warning = f.sink.events().at(0);
  assert_non_null(strstr(warning.message.c_str(), f.path.c_str()));
  assert_non_null(strstr(warning.message.c_str(), "not valid JSON"));
  assert_null(strstr(warning.message.c_str(), "secret"));

  bool removed = true;
  Status st = f.store().remove("secret-token-1", &removed);
  assert_false(st.ok());
  assert_false(removed);
  assert_string_equal(read_file(f.path).c_str(), corrupt.c_str());

  f.add("new-token");
  assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 2);  // list, then add (remove errs)
  assert_true(f.sink.contains("moved aside"));
  std::string aside = "metadata.json.corrupt." + std::to_string(f.clock.now_ms());
  assert_true(f.exists(aside));
  assert_string_equal(read_file(f.dir.file(aside)).c_str(), corrupt.c_str());
  expect_tokens(f, {"new-token"});

  // A second corrupt file in the same millisecond keeps the first copy.
  write_file(f.path, "garbage");
  f.add("new-token");
  assert_true(f.exists(aside + ".1"));
  assert_string_equal(read_file(f.dir.file(aside)).c_str(), corrupt.c_str());
}

void other_bad_files_read_empty(void**) {
  for (const char* content : {"", "[1, 2]", "42", "null", "\"text\"", "{} trailing"}) {
    Fixture f;
    write_file(f.path, content);
    expect_tokens(f, {});
    if (f.sink.count_level(CMN_LOG_WARNING) != 1) fail_msg("content '%s': no single warning", content);
    f.add("tok");
    expect_tokens(f, {"tok"});
  }
  {
    Fixture f;  // deeper than anything a writer could safely write back
    write_file(f.path, std::string(100000, '[') + std::string(100000, ']'));
    expect_tokens(f, {});
    assert_true(f.sink.contains("nested deeper"));
  }
  {
    Fixture f;  // not a regular file
    assert_int_equal(mkfifo(f.path.c_str(), 0600), 0);
    expect_tokens(f, {});
    assert_true(f.sink.contains("not a regular file"));
    f.add("tok");
    expect_tokens(f, {"tok"});
  }
}

void wrong_types_are_ignored_with_one_warning(void**) {
  {
    Fixture f;
    write_file(f.path, R"({"devicetoken": 5, "k": "v"})");
    expect_tokens(f, {});
    assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 1);
    assert_true(f.sink.contains("\"devicetoken\" is a number"));
    f.add("tok");
    assert_true(f.file()["k"] == "v");
    expect_tokens(f, {"tok"});
  }
  {
    Fixture f;
    write_file(f.path,
               R"({"devicetoken": {"a": "x", "b": 1700000000, "c": null, "d": [1], "e": -5, "f": 1e300, "g": 1699999999.5}})");
    expect_tokens(f, {"b", "g"});
    assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 1);
    assert_true(f.sink.contains("ignored 5 bad entries"));
  }
  {
    Fixture f;
    write_file(f.path, R"({"devicetoken": ["a", 5, {"x": 1}, "b"]})");
    expect_tokens(f, {"a", "b"});
    assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 1);
  }
}

void huge_file_reads_empty_and_is_moved_aside(void**) {
  Fixture f;
  std::string huge = R"({"devicetoken": {"t": 1700000000}, "pad": ")" + std::string(1 << 20, 'x') + "\"}";
  write_file(f.path, huge);
  expect_tokens(f, {});
  assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 1);
  assert_true(f.sink.contains("larger than"));
  f.add("tok");
  expect_tokens(f, {"tok"});
  assert_int_equal(read_file(f.dir.file("metadata.json.corrupt." + std::to_string(f.clock.now_ms()))).size(),
                   huge.size());
}

void invalid_tokens_in_file_are_skipped(void**) {
  Fixture f;
  Json doc;
  doc["devicetoken"]["has space"] = 1700000000;
  doc["devicetoken"]["good"] = 1700000000;
  doc["devicetoken"]["quo\"te"] = 1700000000;
  doc["devicetoken"][""] = 1700000000;
  doc["devicetoken"][std::string(5000, 'a')] = 1700000000;
  write_file(f.path, doc.dump());
  expect_tokens(f, {"good"});
  assert_int_equal(f.sink.count_level(CMN_LOG_WARNING), 1);
  assert_true(f.sink.contains("ignored 4 bad entries"));
  assert_true(f.sink.contains(token_hash("has space")));
  assert_false(f.sink.contains("has space"));
}

void remove_one_of_two_leaves_the_other(void**) {
  Fixture f;
  f.add("keep-me");
  f.add("drop-me");
  bool removed = false;
  assert_true(f.store().remove("drop-me", &removed).ok());
  assert_true(removed);
  expect_tokens(f, {"keep-me"});
  assert_true(f.store().remove("drop-me", &removed).ok());
  assert_false(removed);
  assert_false(f.store().remove("bad token", &removed).ok());
  expect_tokens(f, {"keep-me"});
}

void remove_by_hash(void**) {
  Fixture f;
  f.add("alpha");
  f.add("beta");
  bool removed = false;
  assert_true(f.store().remove_by_hash(token_hash("alpha"), &removed).ok());
  assert_true(removed);
  expect_tokens(f, {"beta"});
  assert_true(f.store().remove_by_hash(token_hash("alpha"), &removed).ok());
  assert_false(removed);
  assert_false(f.store().remove_by_hash("beta", &removed).ok());  // not a hash
  expect_tokens(f, {"beta"});
}

void rewrite_keeps_owner_and_mode(void**) {
  Fixture f;
  f.add("a");
  assert_int_equal(chown(f.path.c_str(), kOtherUid, kOtherUid), 0);
  assert_int_equal(chmod(f.path.c_str(), 0640), 0);
  f.add("b");
  struct stat st {};
  assert_int_equal(stat(f.path.c_str(), &st), 0);
  assert_int_equal(st.st_uid, kOtherUid);
  assert_int_equal(st.st_gid, kOtherUid);
  assert_int_equal(st.st_mode & 07777, 0640);
  expect_tokens(f, {"a", "b"});

  Fixture fresh;
  fresh.add("a");
  assert_int_equal(stat(fresh.path.c_str(), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(stat((fresh.path + ".lock").c_str(), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
}

void act_for_uid_creates_files_owned_by_that_uid(void**) {
  Fixture f;
  assert_int_equal(chown(f.dir.path().c_str(), kOtherUid, 12345), 0);
  TokenStore store = f.store();
  store.act_for_uid(kOtherUid);
  Status added = store.add("tok");
  if (!added.ok()) fail_msg("add failed: %s", added.message().c_str());
  for (const char* name : {"metadata.json", "metadata.json.lock"}) {
    struct stat st {};
    assert_int_equal(stat(f.dir.file(name).c_str(), &st), 0);
    assert_int_equal(st.st_uid, kOtherUid);
    assert_int_equal(st.st_gid, 12345);
  }
  std::vector<StoredToken> listed;
  assert_true(store.list(&listed).ok());
  assert_int_equal(listed.size(), 1);
}

void act_for_uid_refuses_what_another_uid_owns(void**) {
  {
    Fixture f;  // the folder belongs to root
    TokenStore store = f.store();
    store.act_for_uid(kOtherUid);
    Status st = store.add("tok");
    assert_false(st.ok());
    assert_non_null(strstr(st.message().c_str(), "folder is owned by uid 0"));
    assert_false(f.exists("metadata.json"));
    assert_false(f.exists("metadata.json.lock"));
  }
  {
    Fixture f;  // the file belongs to root, the folder to the user
    f.add("root-token");
    const std::string before = read_file(f.path);
    assert_int_equal(chown(f.dir.path().c_str(), kOtherUid, kOtherUid), 0);
    assert_int_equal(chown((f.path + ".lock").c_str(), kOtherUid, kOtherUid), 0);
    TokenStore store = f.store();
    store.act_for_uid(kOtherUid);
    Status st = store.add("tok");
    assert_false(st.ok());
    assert_non_null(strstr(st.message().c_str(), "owned by uid 0"));
    bool removed = true;
    assert_false(store.remove("root-token", &removed).ok());
    std::vector<StoredToken> listed;
    assert_false(store.list(&listed).ok());
    assert_string_equal(read_file(f.path).c_str(), before.c_str());
  }
  {
    Fixture f;  // the lock belongs to someone else
    assert_int_equal(chown(f.dir.path().c_str(), kOtherUid, kOtherUid), 0);
    write_file(f.path + ".lock", "");
    TokenStore store = f.store();
    store.act_for_uid(kOtherUid);
    assert_false(store.add("tok").ok());
    assert_false(f.exists("metadata.json"));
  }
  {
    Fixture f;  // a symlink to another user's file, and a symlinked folder
    TempDir victim;
    const std::string target = victim.file("metadata.json");
    write_file(target, R"({"devicetoken": {"victim": 1700000000}})");
    const std::string before = read_file(target);
    assert_int_equal(chown(f.dir.path().c_str(), kOtherUid, kOtherUid), 0);
    assert_int_equal(symlink(target.c_str(), f.path.c_str()), 0);
    assert_int_equal(lchown(f.path.c_str(), kOtherUid, kOtherUid), 0);
    TokenStore store = f.store();
    store.act_for_uid(kOtherUid);
    Status st = store.add("tok");
    assert_false(st.ok());
    if (!strstr(st.message().c_str(), "symbolic link")) fail_msg("message: %s", st.message().c_str());
    bool removed = true;
    assert_false(store.remove("victim", &removed).ok());
    assert_string_equal(read_file(target).c_str(), before.c_str());

    assert_int_equal(chown(victim.path().c_str(), kOtherUid, kOtherUid), 0);
    const std::string link_dir = f.dir.file("linked");
    assert_int_equal(symlink(victim.path().c_str(), link_dir.c_str()), 0);
    TokenStore via_link(link_dir + "/metadata.json", f.options, f.clock, f.sink);
    via_link.act_for_uid(kOtherUid);
    assert_false(via_link.add("tok").ok());
    assert_string_equal(read_file(target).c_str(), before.c_str());
  }
}

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

bool process_has_open(const std::string& path) {
  DIR* d = opendir("/proc/self/fd");
  bool found = false;
  while (dirent* e = readdir(d)) {
    char target[4096];
    std::string link = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    if (n > 0 && std::string(target, size_t(n)) == path) found = true;
  }
  closedir(d);
  return found;
}

void writer_waits_for_the_lock(void**) {
  Fixture f;
  const std::string lock_path = f.path + ".lock";
  int locked[2], release[2];
  assert_int_equal(pipe(locked), 0);
  assert_int_equal(pipe(release), 0);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    // Another writer (the relay's Python code, say) holding the lock. It
    // must not outlive a failed test: it dies with the parent, and the
    // parent's exit closes the last write end of `release`.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(locked[0]);
    close(release[1]);
    int fd = open(lock_path.c_str(), O_RDWR | O_CREAT, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) _exit(1);
    if (write(locked[1], "L", 1) != 1) _exit(1);
    char c;
    if (read(release[0], &c, 1) != 1) _exit(1);
    write_file(f.path, R"({"devicetoken": {"child": 1700000000}})");
    _exit(0);
  }
  assert_true(readable(locked[0], 10000));

  f.options.lock_timeout_ms = 0;
  Status st = f.store().add("impatient");
  assert_false(st.ok());
  assert_non_null(strstr(st.message().c_str(), "locked by another process"));
  assert_false(f.exists("metadata.json"));

  f.options.lock_timeout_ms = 30000;
  Status waited;
  std::thread writer([&] { waited = f.store().add("parent"); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!process_has_open(lock_path) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  assert_true(process_has_open(lock_path));
  assert_false(f.exists("metadata.json"));  // still waiting
  assert_int_equal(write(release[1], "R", 1), 1);
  writer.join();
  int status = 0;
  assert_int_equal(waitpid(child, &status, 0), child);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_true(waited.ok());
  // The writer read the file only once it held the lock: nothing lost.
  expect_tokens(f, {"child", "parent"});
  for (int fd : {locked[0], locked[1], release[0], release[1]}) close(fd);
}

void no_tmp_file_is_left_behind(void**) {
  Fixture f;
  f.add("a");
  assert_true(strays(f).empty());

  // A leftover from a crash is neither trusted nor kept.
  write_file(f.path + ".tmp", "half a fi");
  f.add("b");
  assert_true(strays(f).empty());
  const std::string before = read_file(f.path);

  // The write fails halfway: the file stays as it was, the tmp goes.
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit old_limit {};
  getrlimit(RLIMIT_FSIZE, &old_limit);
  struct rlimit small = old_limit;
  small.rlim_cur = 16;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
  Status st = f.store().add(std::string(200, 'c'));
  setrlimit(RLIMIT_FSIZE, &old_limit);
  signal(SIGXFSZ, SIG_DFL);
  assert_false(st.ok());
  assert_non_null(strstr(st.message().c_str(), "cannot write"));
  assert_true(strays(f).empty());
  assert_string_equal(read_file(f.path).c_str(), before.c_str());
  expect_tokens(f, {"a", "b"});
}

void c_abi_round_trip(void**) {
  TempDir dir;
  const std::string path = dir.file("metadata.json");
  cmn_token_store_options_t opts{};
  opts.ttl_ms = 0;
  opts.max_tokens = 0;
  opts.now_ms = 1700000000000;
  char* err = nullptr;
  assert_int_equal(cmn_token_store_add(path.c_str(), "one", 3, &opts, &err), 0);
  assert_int_equal(cmn_token_store_add(path.c_str(), "two", 3, &opts, &err), 0);
  assert_int_equal(cmn_token_store_add(path.c_str(), "t w", 3, &opts, &err), -1);
  assert_non_null(err);
  cmn_free(err);
  err = nullptr;
  std::vector<std::string> seen;
  auto collect = [](void* ctx, const char* token, size_t len, int64_t) {
    static_cast<std::vector<std::string>*>(ctx)->emplace_back(token, len);
  };
  assert_int_equal(cmn_token_store_list(path.c_str(), &opts, collect, &seen, &err), 2);
  assert_true((seen == std::vector<std::string>{"one", "two"}));
  std::string hash = token_hash("one");
  assert_int_equal(cmn_token_store_remove(path.c_str(), hash.c_str(), 0, &opts, &err), 1);
  assert_int_equal(cmn_token_store_remove(path.c_str(), "two", 3, &opts, &err), 1);
  assert_int_equal(cmn_token_store_remove(path.c_str(), "two", 3, &opts, &err), 0);
  assert_null(err);
}

}  // namespace

int main() {
  if (geteuid() != 0) {
    fprintf(stderr, "test_token_store needs root (it tests ownership)\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(missing_file_is_empty_and_costs_no_lock),
      cmocka_unit_test(add_keeps_devices_in_insertion_order),
      cmocka_unit_test(refresh_keeps_position_and_updates_time),
      cmocka_unit_test(identical_token_again_is_no_duplicate),
      cmocka_unit_test(expired_tokens_are_skipped_then_dropped),
      cmocka_unit_test(max_tokens_keeps_the_newest),
      cmocka_unit_test(max_tokens_never_drops_the_token_just_added),
      cmocka_unit_test(legacy_list_is_read_and_rewritten_as_map),
      cmocka_unit_test(unknown_keys_are_kept_untouched),
      cmocka_unit_test(corrupt_json_reads_empty_once_and_add_moves_it_aside),
      cmocka_unit_test(other_bad_files_read_empty),
      cmocka_unit_test(wrong_types_are_ignored_with_one_warning),
      cmocka_unit_test(huge_file_reads_empty_and_is_moved_aside),
      cmocka_unit_test(invalid_tokens_in_file_are_skipped),
      cmocka_unit_test(remove_one_of_two_leaves_the_other),
      cmocka_unit_test(remove_by_hash),
      cmocka_unit_test(rewrite_keeps_owner_and_mode),
      cmocka_unit_test(act_for_uid_creates_files_owned_by_that_uid),
      cmocka_unit_test(act_for_uid_refuses_what_another_uid_owns),
      cmocka_unit_test(writer_waits_for_the_lock),
      cmocka_unit_test(no_tmp_file_is_left_behind),
      cmocka_unit_test(c_abi_round_trip),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
