// The delivery side of the spool: one write per message into a locked,
// per-uid journal; refusals and failures are errors, never crashes.
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "spool_files.h"
#include "spool_record.h"
#include "spool_writer.h"
#include "test_support.h"

extern "C" {
#include <cmocka.h>
}

using namespace cmn;
using cmn::test::read_file;
using cmn::test::TempDir;
using cmn::test::write_file;

namespace {

constexpr int64_t kNow = 1700000000000;
const std::string kStore = "/home/a/metadata.json";

struct Spooldir {
  TempDir tmp;
  std::string incoming = tmp.file("incoming");
  Spooldir() {
    mkdir(incoming.c_str(), 0700);
  }
  std::vector<std::string> journals() const {
    std::vector<std::string> names;
    DIR* d = opendir(incoming.c_str());
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }
  std::string journal_path(size_t i = 0) const { return incoming + "/" + journals().at(i); }
};

std::string expected_records(const std::string& addr, const std::vector<std::string_view>& tokens,
                             uid_t uid = 0) {
  std::string out;
  for (std::string_view token : tokens) {
    SpoolRecord rec;
    rec.owner_uid = uid;
    rec.start_ms = kNow;
    rec.due_ms = kNow;
    rec.addr = addr;
    rec.store_path = kStore;
    rec.token = token;
    encode_record(rec, &out);
  }
  return out;
}

bool locked_by_someone(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY));
  assert_true(fd.valid());
  return flock(fd.get(), LOCK_EX | LOCK_NB) != 0;
}

void each_enqueue_appends_exactly_its_records(void**) {
  Spooldir spool;
  SpoolWriter writer(spool.tmp.path(), true);
  const std::string tok1(840, 'a'), tok2(840, 'b');
  assert_true(writer.enqueue("a@example.org", kStore, {tok1, tok2}, kNow).ok());
  assert_int_equal(spool.journals().size(), 1);
  std::string want = expected_records("a@example.org", {tok1, tok2});
  assert_true(read_file(spool.journal_path()) == want);
  assert_true(writer.enqueue("b@example.org", kStore, {tok2}, kNow).ok());
  want += expected_records("b@example.org", {tok2});
  assert_true(read_file(spool.journal_path()) == want);
  assert_int_equal(spool.journals().size(), 1);
}

void journal_is_named_private_and_locked_while_the_writer_lives(void**) {
  Spooldir spool;
  {
    SpoolWriter writer(spool.tmp.path(), false);
    assert_int_equal(spool.journals().size(), 0);  // nothing before the first enqueue
    assert_true(writer.enqueue("a@example.org", kStore, {"t1"}, kNow).ok());
    const std::string name = spool.journals().at(0);
    assert_true(is_journal_name(name));
    assert_true(name.starts_with(std::to_string(geteuid()) + "." + std::to_string(getpid()) + "."));
    struct stat st;
    assert_int_equal(stat(spool.journal_path().c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_true(locked_by_someone(spool.journal_path()));
  }
  assert_false(locked_by_someone(spool.journal_path()));
  // No temporary file is left.
  DIR* d = opendir(spool.incoming.c_str());
  while (dirent* e = readdir(d)) assert_false(std::string(e->d_name).starts_with(".tmp-"));
  closedir(d);
}

void no_tokens_writes_nothing(void**) {
  Spooldir spool;
  SpoolWriter writer(spool.tmp.path(), true);
  assert_true(writer.enqueue("a@example.org", kStore, {}, kNow).ok());
  assert_int_equal(spool.journals().size(), 0);
}

void full_spool_refuses_with_a_clear_error(void**) {
  Spooldir spool;
  write_file(spool.tmp.file("full"), "");
  SpoolWriter writer(spool.tmp.path(), true);
  Status st = writer.enqueue("a@example.org", kStore, {"t1"}, kNow);
  assert_false(st.ok());
  assert_non_null(strstr(st.message().c_str(), "spool is full ("));
  assert_int_equal(spool.journals().size(), 0);
  unlink(spool.tmp.file("full").c_str());
  assert_true(writer.enqueue("a@example.org", kStore, {"t1"}, kNow).ok());
}

void unwritable_spool_is_an_error_not_a_crash(void**) {
  TempDir tmp;
  SpoolWriter missing(tmp.file("nope"), true);
  Status st = missing.enqueue("a@example.org", kStore, {"t1"}, kNow);
  assert_false(st.ok());
  assert_non_null(strstr(st.message().c_str(), "cannot create spool journal"));

  write_file(tmp.file("incoming"), "a file, not a directory");
  SpoolWriter blocked(tmp.path(), true);
  assert_false(blocked.enqueue("a@example.org", kStore, {"t1"}, kNow).ok());
}

void oversized_item_is_refused(void**) {
  Spooldir spool;
  SpoolWriter writer(spool.tmp.path(), true);
  std::string huge(kRecordFieldMax + 1, 'x');
  Status st = writer.enqueue("a@example.org", kStore, {"ok", huge}, kNow);
  assert_false(st.ok());
  assert_non_null(strstr(st.message().c_str(), "too large"));
  assert_int_equal(spool.journals().size(), 0);  // not even the good token
}

void journal_rotates_after_four_mebibytes(void**) {
  Spooldir spool;
  SpoolWriter writer(spool.tmp.path(), false);
  const std::string token(4000, 't');
  size_t written = 0;
  while (written < 4 * 1024 * 1024 + 1) {
    assert_true(writer.enqueue("a@example.org", kStore, {token}, kNow).ok());
    written += expected_records("a@example.org", {token}).size();
  }
  std::vector<std::string> names = spool.journals();
  assert_int_equal(names.size(), 2);
  size_t old_index = read_file(spool.journal_path(0)).size() > read_file(spool.journal_path(1)).size() ? 0 : 1;
  assert_true(read_file(spool.journal_path(old_index)).size() <= 4 * 1024 * 1024);
  // The writer let go of the full journal, so the sender can take it away.
  assert_false(locked_by_someone(spool.journal_path(old_index)));
  assert_true(locked_by_someone(spool.journal_path(1 - old_index)));
}

void short_write_abandons_the_journal(void**) {
  Spooldir spool;
  SpoolWriter writer(spool.tmp.path(), false);
  const std::string token(840, 'z');
  assert_true(writer.enqueue("a@example.org", kStore, {token}, kNow).ok());
  const size_t one = expected_records("a@example.org", {token}).size();

  // The file size limit cuts the next write in the middle of a record.
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit old_limit, limit;
  getrlimit(RLIMIT_FSIZE, &old_limit);
  limit = old_limit;
  limit.rlim_cur = one + one / 2;
  setrlimit(RLIMIT_FSIZE, &limit);
  Status st = writer.enqueue("a@example.org", kStore, {token, token}, kNow);
  setrlimit(RLIMIT_FSIZE, &old_limit);
  assert_false(st.ok());
  const std::string first = spool.journal_path();
  assert_false(locked_by_someone(first));  // abandoned
  assert_int_equal(read_file(first).size(), one);  // without the partial record

  assert_true(writer.enqueue("b@example.org", kStore, {token}, kNow).ok());
  assert_int_equal(spool.journals().size(), 2);
  std::string second;
  for (const std::string& name : spool.journals())
    if (spool.incoming + "/" + name != first) second = spool.incoming + "/" + name;
  assert_true(read_file(second) == expected_records("b@example.org", {token}));
}

void each_uid_gets_its_own_journal_owned_by_it(void**) {
  if (geteuid() != 0) {
    skip();
    return;
  }
  Spooldir spool;
  chmod(spool.tmp.path().c_str(), 0711);
  chmod(spool.incoming.c_str(), 01733);
  SpoolWriter writer(spool.tmp.path(), true);
  assert_true(writer.enqueue("root@example.org", kStore, {"t-root"}, kNow).ok());
  assert_int_equal(seteuid(65534), 0);
  Status st = writer.enqueue("nobody@example.org", kStore, {"t-nobody"}, kNow);
  assert_int_equal(seteuid(0), 0);
  if (!st.ok()) fail_msg("%s", st.message().c_str());
  assert_true(writer.enqueue("root@example.org", kStore, {"t-root2"}, kNow).ok());

  std::vector<std::string> names = spool.journals();
  assert_int_equal(names.size(), 2);
  for (const std::string& name : names) {
    struct stat info;
    assert_int_equal(stat((spool.incoming + "/" + name).c_str(), &info), 0);
    const std::string content = read_file(spool.incoming + "/" + name);
    if (info.st_uid == 65534) {
      assert_true(name.starts_with("65534."));
      assert_true(content == expected_records("nobody@example.org", {"t-nobody"}, 65534));
    } else {
      assert_int_equal(info.st_uid, 0);
      assert_true(content == expected_records("root@example.org", {"t-root", "t-root2"}, 0));
    }
  }
}

void c_abi_reports_errors(void**) {
  char* error = nullptr;
  assert_null(cmn_spool_writer_create("relative", 1, &error));
  assert_non_null(error);
  cmn_free(error);
  error = nullptr;
  Spooldir spool;
  cmn_spool_writer_t* w = cmn_spool_writer_create(spool.tmp.path().c_str(), 1, &error);
  assert_non_null(w);
  const char* tokens[] = {"t1", "t2"};
  const size_t lens[] = {2, 2};
  assert_int_equal(cmn_spool_writer_enqueue(w, "a@example.org", kStore.c_str(), tokens, lens, 2, kNow, &error), 0);
  write_file(spool.tmp.file("full"), "");
  assert_int_equal(cmn_spool_writer_enqueue(w, "a@example.org", kStore.c_str(), tokens, lens, 2, kNow, &error), -1);
  assert_non_null(strstr(error, "spool is full"));
  cmn_free(error);
  cmn_spool_writer_destroy(w);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(each_enqueue_appends_exactly_its_records),
      cmocka_unit_test(journal_is_named_private_and_locked_while_the_writer_lives),
      cmocka_unit_test(no_tokens_writes_nothing),
      cmocka_unit_test(full_spool_refuses_with_a_clear_error),
      cmocka_unit_test(unwritable_spool_is_an_error_not_a_crash),
      cmocka_unit_test(oversized_item_is_refused),
      cmocka_unit_test(journal_rotates_after_four_mebibytes),
      cmocka_unit_test(short_write_abandons_the_journal),
      cmocka_unit_test(each_uid_gets_its_own_journal_owned_by_it),
      cmocka_unit_test(c_abi_reports_errors),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
