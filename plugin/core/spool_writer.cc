#include "spool_writer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "spool_files.h"
#include "spool_record.h"

namespace cmn {
namespace {

constexpr uint64_t kRotateBytes = 4 * 1024 * 1024;
// A leftover-tmp sweep by a restarting sender may remove our tmp file
// between its creation and its lock: try again with a new one.
constexpr int kCreateAttempts = 3;

// Makes the journal's new name durable. A mail uid may not read a root
// sender's incoming/ (mode 01733) and so cannot fsync it; then the
// journal's first fdatasync carries the rename along (journaling file
// systems commit metadata changes in order).
Status sync_incoming(const std::string& incoming) {
  UniqueFd fd(::open(incoming.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errno == EACCES ? Status() : Status::errno_error("cannot open " + incoming, errno);
  if (::fsync(fd.get()) != 0) return Status::errno_error("cannot fsync " + incoming, errno);
  return Status();
}

}  // namespace

struct SpoolWriter::Journal {
  UniqueFd fd;
  uint64_t size = 0;
};

SpoolWriter::SpoolWriter(std::string spool_dir, bool durable)
    : spool_dir_(std::move(spool_dir)), durable_(durable) {}

SpoolWriter::~SpoolWriter() = default;

Status SpoolWriter::open_journal(uid_t uid, int64_t now_ms, std::unique_ptr<Journal>* out) {
  const std::string incoming = spool_dir_ + "/incoming";
  Status last;
  for (int attempt = 0; attempt < kCreateAttempts; attempt++) {
    const std::string name = journal_name(uid, now_ms);
    const std::string tmp = incoming + "/" + std::string(kTmpPrefix) + name;
    auto journal = std::make_unique<Journal>();
    journal->fd.reset(::open(tmp.c_str(),
                             O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!journal->fd.valid()) return Status::errno_error("cannot create spool journal " + tmp, errno);
    if (::flock(journal->fd.get(), LOCK_EX) != 0) {
      Status st = Status::errno_error("cannot lock spool journal " + tmp, errno);
      ::unlink(tmp.c_str());
      return st;
    }
    if (::rename(tmp.c_str(), (incoming + "/" + name).c_str()) != 0) {
      last = Status::errno_error("cannot rename spool journal " + tmp, errno);
      if (errno == ENOENT) continue;
      ::unlink(tmp.c_str());
      return last;
    }
    if (durable_) {
      Status st = sync_incoming(incoming);
      if (!st.ok()) return st;
    }
    *out = std::move(journal);
    return Status();
  }
  return last;
}

Status SpoolWriter::enqueue(std::string_view addr, std::string_view token_store_path,
                            const std::vector<std::string_view>& tokens, int64_t now_ms) {
  if (tokens.empty()) return Status();
  struct stat st;
  const std::string full = spool_dir_ + "/full";
  if (::stat(full.c_str(), &st) == 0)
    return Status::error("spool is full (" + full + " exists: the sender is behind or down)");

  const uid_t uid = ::geteuid();
  std::string records;
  std::vector<size_t> record_ends;
  for (std::string_view token : tokens) {
    SpoolRecord rec;
    rec.type = RecordType::kItem;
    rec.owner_uid = uid;
    rec.start_ms = now_ms;
    rec.due_ms = now_ms;
    rec.addr = addr;
    rec.store_path = token_store_path;
    rec.token = token;
    if (!encode_record(rec, &records))
      return Status::error("spool item too large (address, token store path or token over " +
                           std::to_string(kRecordFieldMax) + " bytes)");
    record_ends.push_back(records.size());
  }

  std::unique_ptr<Journal>& journal = journals_[uid];
  if (journal && journal->size > 0 && journal->size + records.size() > kRotateBytes)
    journal.reset();
  if (!journal) {
    Status opened = open_journal(uid, now_ms, &journal);
    if (!opened.ok()) return opened;
  }

  ssize_t n;
  do {
    n = ::write(journal->fd.get(), records.data(), records.size());
  } while (n < 0 && errno == EINTR);
  if (n != ssize_t(records.size())) {
    const int error = n < 0 ? errno : ENOSPC;
    if (n <= 0) return Status::errno_error("cannot append to spool journal", error);
    // A partial record must not stay in front of the next message's
    // records, nor be left for the sender to quarantine: it is cut off at
    // the end of the last whole record (which the sender may have read
    // already, so never before it), and the journal is abandoned.
    size_t whole = 0, kept = 0;
    while (kept < record_ends.size() && record_ends[kept] <= size_t(n)) whole = record_ends[kept++];
    std::string what = "cannot append to spool journal";
    if (kept > 0) what += " (" + std::to_string(kept) + " of " + std::to_string(tokens.size()) + " items written)";
    if (::ftruncate(journal->fd.get(), off_t(journal->size + whole)) != 0)
      what += " (and cannot cut off the partial record: " + std::string(std::strerror(errno)) + ")";
    journal.reset();
    return Status::errno_error(what, error);
  }
  journal->size += records.size();
  if (durable_ && ::fdatasync(journal->fd.get()) != 0) {
    Status failed = Status::errno_error("cannot fdatasync spool journal", errno);
    journal.reset();
    return failed;
  }
  return Status();
}

}  // namespace cmn
