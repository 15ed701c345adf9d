#include "spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "spool_files.h"
#include "spool_record.h"
#include "token.h"

namespace cmn {
namespace {

Event make_event(cmn_log_level level, std::string name, std::string message) {
  Event event;
  event.level = level;
  event.name = std::move(name);
  event.message = std::move(message);
  return event;
}

constexpr char kStateName[] = "journal";
// Mail uids must reach incoming/ and stat <dir>/full, nothing more.
constexpr mode_t kRootSpoolMode = 0711;
constexpr size_t kReadChunk = 1024 * 1024;
constexpr size_t kFlushRequestMax = 4096;
constexpr size_t kBatchBytes = 4 * 1024 * 1024;  // ingest commits at least this often
constexpr char kQuarantinedEvent[] = "chatmail_notify_quarantined";

// Reads the records of a journal in order, from an offset, a chunk at a
// time (a state journal of 100,000 items does not fit the memory budget).
class RecordReader {
 public:
  enum class Next { kRecord, kEnd, kTruncated, kCorrupt, kIoError };

  RecordReader(int fd, uint64_t offset) : fd_(fd), base_(offset) {}

  // kRecord: *record and record_offset()/record_size() describe it.
  // kCorrupt/kTruncated/kIoError: *error says why; offset() is where.
  Next next(SpoolRecord* record, std::string* error) {
    for (;;) {
      std::string_view data = std::string_view(buf_).substr(pos_);
      size_t size = 0;
      switch (decode_record(data, record, &size, error)) {
        case DecodeResult::kOk:
          record_offset_ = offset();
          record_size_ = size;
          pos_ += size;
          return Next::kRecord;
        case DecodeResult::kCorrupt:
          return Next::kCorrupt;
        case DecodeResult::kIncomplete:
          break;
      }
      if (eof_) {
        if (data.empty()) return Next::kEnd;
        *error = "truncated record (" + std::to_string(data.size()) + " bytes at the end)";
        return Next::kTruncated;
      }
      if (!fill(error)) return Next::kIoError;
    }
  }

  // After kCorrupt: moves to the next place a record could start. False
  // when the journal holds none (offset() is then its end).
  bool resync() {
    pos_ = find_record_start(buf_, pos_ + 1);
    while (pos_ == buf_.size() && !eof_) {
      std::string ignored;
      if (!fill(&ignored)) return false;
      pos_ = find_record_start(buf_, pos_);
    }
    return pos_ < buf_.size();
  }

  uint64_t offset() const { return base_ + pos_; }
  uint64_t record_offset() const { return record_offset_; }
  uint32_t record_size() const { return uint32_t(record_size_); }

 private:
  bool fill(std::string* error) {
    buf_.erase(0, pos_);
    base_ += pos_;
    pos_ = 0;
    const size_t old = buf_.size();
    buf_.resize(old + kReadChunk);
    ssize_t n;
    do {
      n = ::pread(fd_, buf_.data() + old, kReadChunk, off_t(base_ + old));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      *error = std::string("read error: ") + std::strerror(errno);
      buf_.resize(old);
      return false;
    }
    buf_.resize(old + size_t(n));
    if (n == 0) eof_ = true;
    return true;
  }

  int fd_;
  uint64_t base_;  // file offset of buf_[0]
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
  uint64_t record_offset_ = 0;
  size_t record_size_ = 0;
};

Status write_all(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::errno_error("cannot write " + what, n < 0 ? errno : ENOSPC);
    data.remove_prefix(size_t(n));
  }
  return Status();
}

std::vector<std::string> list_directory(const std::string& dir, Status* status) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    *status = Status::errno_error("cannot read directory " + dir, errno);
    return names;
  }
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Creates `path` if missing, then warns if it is looser than `mode`.
Status ensure_directory(const std::string& path, mode_t mode, EventSink& events) {
  if (::mkdir(path.c_str(), mode) == 0) {
    if (::chmod(path.c_str(), mode) != 0) return Status::errno_error("cannot chmod " + path, errno);
    return Status();
  }
  if (errno != EEXIST) return Status::errno_error("cannot create directory " + path, errno);
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::errno_error("cannot stat " + path, errno);
  if (!S_ISDIR(st.st_mode)) return Status::error(path + " exists and is not a directory");
  const mode_t have = st.st_mode & 07777;
  const bool looser = (have & ~mode) != 0 || ((mode & S_ISVTX) && !(have & S_ISVTX));
  if (looser) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "%s has mode %04o, looser than %04o", path.c_str(), unsigned(have),
                  unsigned(mode));
    events.emit(make_event(CMN_LOG_WARNING, "", buf));
  }
  return Status();
}

// What the spool keeps in memory of an item: where its record is and what
// changed since. Address, key and token are read back from the record
// (a few dozen bytes per item, for 100,000 items within the budget).
struct LiveItem {
  uint64_t offset = 0;  // of its ITEM record in the state journal
  uint32_t size = 0;    // 0: a hole in LiveItems
  uint32_t attempt = 0;
  int64_t start_ms = 0;
  int64_t due_ms = 0;
  uid_t owner_uid = 0;
};

// The live items by id, without a heap node per item: a vector sorted by
// id (a new id is the highest, so adding is an append), where a finished
// item leaves a hole until holes are most of it.
class LiveItems {
 public:
  struct Entry {
    uint64_t id;
    LiveItem item;
  };

  size_t size() const { return count_; }
  void clear() {
    entries_.clear();
    count_ = 0;
  }

  LiveItem* find(uint64_t id) {
    auto it = position(id);
    return it != entries_.end() && it->id == id && it->item.size != 0 ? &it->item : nullptr;
  }

  // Adds or replaces; the size of the item it replaces, or 0.
  uint32_t put(uint64_t id, const LiveItem& item) {
    if (entries_.empty() || entries_.back().id < id) {
      entries_.push_back(Entry{id, item});
      count_++;
      return 0;
    }
    auto it = position(id);  // out of order: only a damaged journal does this
    if (it == entries_.end() || it->id != id) it = entries_.insert(it, Entry{id, LiveItem{}});
    const uint32_t replaced = it->item.size;
    if (replaced == 0) count_++;
    it->item = item;
    return replaced;
  }

  // The size of the removed item, or 0 if there was none.
  uint32_t erase(uint64_t id) {
    LiveItem* item = find(id);
    if (item == nullptr) return 0;
    const uint32_t removed = item->size;
    item->size = 0;
    count_--;
    if (entries_.size() - count_ > std::max<size_t>(count_, 1024))
      std::erase_if(entries_, [](const Entry& e) { return e.item.size == 0; });
    return removed;
  }

  // In id order, while fn(id, item) returns true.
  template <typename Fn>
  void for_each(Fn fn) {
    for (Entry& e : entries_)
      if (e.item.size != 0 && !fn(e.id, e.item)) return;
  }

 private:
  std::vector<Entry>::iterator position(uint64_t id) {
    return std::lower_bound(entries_.begin(), entries_.end(), id,
                            [](const Entry& e, uint64_t wanted) { return e.id < wanted; });
  }

  std::vector<Entry> entries_;
  size_t count_ = 0;  // entries that are not holes
};

PendingItem pending_from(const SpoolRecord& rec, uint64_t id, uid_t owner) {
  PendingItem item;
  item.id = id;
  item.owner_uid = owner;
  item.attempt = rec.attempt;
  item.start_ms = rec.start_ms;
  item.due_ms = rec.due_ms;
  item.key = item_key(owner, rec.store_path, rec.token);
  item.addr = rec.addr;
  return item;
}

// What one read of an incoming journal found.
struct JournalScan {
  bool writer_gone = false;
  bool complete = false;       // read to its end, nothing partial
  std::string problem;         // set: quarantine after the commit
};

class SpoolImpl final : public Spool {
 public:
  SpoolImpl(const Options& options, const Clock& clock, EventSink& events)
      : options_(options),
        clock_(clock),
        events_(events),
        incoming_(options.dir + "/incoming"),
        state_dir_(options.dir + "/state"),
        quarantine_(options.dir + "/quarantine"),
        control_(options.dir + "/control") {}

  Status init() {
    const bool root = ::geteuid() == 0;
    Status st = ensure_directory(options_.dir, root ? kRootSpoolMode : 0700, events_);
    if (st.ok()) st = ensure_directory(incoming_, root ? 01733 : 0700, events_);
    for (const std::string* dir : {&state_dir_, &quarantine_, &control_})
      if (st.ok()) st = ensure_directory(*dir, 0700, events_);
    if (!st.ok()) return st;
    const std::string state = state_dir_ + "/" + kStateName;
    state_fd_.reset(::open(state.c_str(), O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!state_fd_.valid()) return Status::errno_error("cannot open state journal " + state, errno);
    inotify_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!inotify_.valid()) return Status::errno_error("inotify_init1", errno);
    if (::inotify_add_watch(inotify_.get(), incoming_.c_str(),
                            IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_CREATE) < 0)
      return Status::errno_error("cannot watch " + incoming_, errno);
    if (::inotify_add_watch(inotify_.get(), control_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0)
      return Status::errno_error("cannot watch " + control_, errno);
    return Status();
  }

  Status recover(std::vector<PendingItem>* live) override {
    live_.clear();
    cursors_.clear();
    live_bytes_ = 0;
    Status st = replay_state();
    if (!st.ok()) return st;
    live->clear();
    live->reserve(live_.size());
    if (!(st = read_replayed_items(live)).ok()) return st;
    // Items taken in now are added as they are committed: the journal they
    // went to is not read again.
    if (!(st = take_incoming(true, live)).ok()) return st;
    if (!std::is_sorted(live->begin(), live->end(), by_id))
      std::sort(live->begin(), live->end(), by_id);
    Event done = make_event(CMN_LOG_INFO, "chatmail_notify_recovered",
                            "spool recovered: " + std::to_string(live->size()) + " pending items");
    done.count = int64_t(live->size());
    events_.emit(std::move(done));
    return Status();
  }

  Status ingest(std::vector<PendingItem>* fresh) override {
    fresh->clear();
    return take_incoming(false, fresh);
  }

  Status payload(uint64_t id, ItemPayload* out) override {
    const LiveItem* kept = live_.find(id);
    if (kept == nullptr) return Status::error("spool item " + std::to_string(id) + " is unknown");
    SpoolRecord rec;
    Status st = read_item(id, *kept, &rec);
    if (!st.ok()) return st;
    out->addr = std::move(rec.addr);
    out->store_path = std::move(rec.store_path);
    out->token = std::move(rec.token);
    return Status();
  }

  Status reschedule(const PendingItem& item) override {
    LiveItem* found = live_.find(item.id);
    if (found == nullptr) return Status::error("spool item " + std::to_string(item.id) + " is unknown");
    LiveItem& kept = *found;
    kept.attempt = item.attempt;
    kept.due_ms = item.due_ms;
    kept.start_ms = item.start_ms;
    SpoolRecord rec;
    rec.type = RecordType::kUpdate;
    rec.id = item.id;
    rec.attempt = item.attempt;
    rec.due_ms = item.due_ms;
    rec.start_ms = item.start_ms;
    encode_record(rec, &pending_);
    return Status();
  }

  Status finish(uint64_t id) override {
    const uint32_t size = live_.erase(id);
    if (size == 0) return Status();
    live_bytes_ -= size;
    SpoolRecord rec;
    rec.type = RecordType::kDone;
    rec.id = id;
    encode_record(rec, &pending_);
    return Status();
  }

  Status sync() override {
    Status st = commit("");
    return st.ok() ? maybe_compact() : st;
  }

  int watch_fd() const override { return inotify_.get(); }

  void clear_watch() override {
    alignas(inotify_event) char buf[4096];
    while (::read(inotify_.get(), buf, sizeof(buf)) > 0) {
    }
  }

  std::vector<std::string> take_flush_requests() override {
    std::vector<std::string> requests;
    Status st;
    for (const std::string& name : list_directory(control_, &st)) {
      if (!name.starts_with("flush.")) continue;
      const std::string path = control_ + "/" + name;
      UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      struct stat info;
      if (!fd.valid() || ::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode) ||
          size_t(info.st_size) > kFlushRequestMax) {
        quarantine(control_, name, "not a flush request (not a small regular file)");
        continue;
      }
      std::string addr(size_t(info.st_size), '\0');
      ssize_t n = ::pread(fd.get(), addr.data(), addr.size(), 0);
      addr.resize(n > 0 ? size_t(n) : 0);
      while (!addr.empty() && (addr.back() == '\n' || addr.back() == '\r')) addr.pop_back();
      ::unlink(path.c_str());
      requests.push_back(std::move(addr));
    }
    return requests;
  }

  Status publish_status(const cmn_sender_stats_t& stats, int64_t started_ms) override {
    nlohmann::json doc = {
        {"sender_pid", ::getpid()},
        {"started_ms", started_ms},
        {"stats_ms", clock_.now_ms()},
        {"stats",
         {{"enqueued", stats.enqueued},
          {"sent", stats.sent},
          {"gone", stats.gone},
          {"retried", stats.retried},
          {"dropped", stats.dropped},
          {"coalesced", stats.coalesced},
          {"quarantined", stats.quarantined},
          {"pending", stats.pending},
          {"inflight", stats.inflight}}},
    };
    Status st = replace_file(options_.dir, "status", doc.dump() + "\n", false, 0644);
    if (!st.ok()) return st;
    const std::string full = options_.dir + "/full";
    const bool want_full = options_.max_items > 0 && stats.pending > options_.max_items;
    if (want_full) {
      UniqueFd fd(::open(full.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
      if (!fd.valid()) return Status::errno_error("cannot create " + full, errno);
    } else if (::unlink(full.c_str()) != 0 && errno != ENOENT) {
      return Status::errno_error("cannot remove " + full, errno);
    }
    return Status();
  }

 private:
  void warn(const std::string& message, const char* name = "") {
    events_.emit(make_event(CMN_LOG_WARNING, name, message));
  }

  // Moves dir/name to quarantine/ (a taken name gets a suffix): one warning.
  void quarantine(const std::string& dir, const std::string& name, const std::string& why) {
    const std::string from = dir + "/" + name;
    std::string to = quarantine_ + "/" + name;
    int moved;
    for (int i = 1; (moved = ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE)) != 0 &&
                    errno == EEXIST;
         i++)
      to = quarantine_ + "/" + name + "." + std::to_string(i);
    if (moved != 0) {
      if (errno != ENOENT && unmovable_.insert(from).second)
        warn("cannot quarantine " + from + " (" + why + "): " + std::strerror(errno), kQuarantinedEvent);
      return;
    }
    warn("quarantined " + from + " as " + to + ": " + why, kQuarantinedEvent);
  }

  void add_live(uint64_t id, const LiveItem& item) {
    live_bytes_ -= live_.put(id, item);
    live_bytes_ += item.size;
    next_id_ = std::max(next_id_, id + 1);
  }

  Status read_item(uint64_t id, const LiveItem& entry, SpoolRecord* rec) {
    std::string buf(entry.size, '\0');
    ssize_t n;
    do {
      n = ::pread(state_fd_.get(), buf.data(), buf.size(), off_t(entry.offset));
    } while (n < 0 && errno == EINTR);
    if (n != ssize_t(buf.size())) return Status::errno_error("cannot read state journal", n < 0 ? errno : EIO);
    size_t size = 0;
    std::string error;
    if (decode_record(buf, rec, &size, &error) != DecodeResult::kOk || rec->type != RecordType::kItem)
      return Status::error("state journal record of item " + std::to_string(id) + " is unreadable: " + error);
    return Status();
  }

  void apply(const SpoolRecord& rec, const RecordReader& reader) {
    switch (rec.type) {
      case RecordType::kItem:
        add_live(rec.id, LiveItem{reader.record_offset(), reader.record_size(), rec.attempt, rec.start_ms,
                                  rec.due_ms, uid_t(rec.owner_uid)});
        break;
      case RecordType::kUpdate:
        if (LiveItem* kept = live_.find(rec.id)) {
          kept->attempt = rec.attempt;
          kept->due_ms = rec.due_ms;
          kept->start_ms = rec.start_ms;
        }
        break;
      case RecordType::kDone:
        live_bytes_ -= live_.erase(rec.id);
        break;
      case RecordType::kCursor:
        cursors_[rec.file] = rec.offset;
        break;
    }
  }

  // A compaction that was cut short leaves its temporary file behind.
  void remove_state_leftovers() {
    Status st;
    for (const std::string& name : list_directory(state_dir_, &st)) {
      if (!name.starts_with(kTmpPrefix)) continue;
      if (::unlink((state_dir_ + "/" + name).c_str()) == 0)
        warn("removed leftover temporary file " + state_dir_ + "/" + name + " of an interrupted compaction");
    }
  }

  static bool by_id(const PendingItem& a, const PendingItem& b) { return a.id < b.id; }

  // One more streaming pass over the replayed journal fills in what is
  // not kept in memory of its live items (address, key).
  Status read_replayed_items(std::vector<PendingItem>* live) {
    RecordReader reader(state_fd_.get(), 0);
    SpoolRecord rec;
    std::string error;
    const size_t wanted = live->size() + live_.size();
    while (live->size() < wanted) {
      RecordReader::Next next = reader.next(&rec, &error);
      if (next == RecordReader::Next::kCorrupt && reader.resync()) continue;
      if (next == RecordReader::Next::kIoError) return Status::error("state journal: " + error);
      if (next != RecordReader::Next::kRecord) break;
      if (rec.type != RecordType::kItem) continue;
      const LiveItem* kept = live_.find(rec.id);
      if (kept == nullptr || kept->offset != reader.record_offset()) continue;
      PendingItem item = pending_from(rec, rec.id, kept->owner_uid);
      item.attempt = kept->attempt;
      item.start_ms = kept->start_ms;
      item.due_ms = kept->due_ms;
      live->push_back(std::move(item));
    }
    if (live->size() != wanted) return Status::error("state journal changed while it was recovered");
    return Status();
  }

  Status replay_state() {
    remove_state_leftovers();
    const std::string path = state_dir_ + "/" + kStateName;
    RecordReader reader(state_fd_.get(), 0);
    SpoolRecord rec;
    std::string error, first_error;
    std::vector<std::pair<uint64_t, uint64_t>> bad;  // [from, to) ranges
    for (;;) {
      RecordReader::Next next = reader.next(&rec, &error);
      if (next == RecordReader::Next::kRecord) {
        apply(rec, reader);
        continue;
      }
      if (next == RecordReader::Next::kEnd) break;
      if (next == RecordReader::Next::kIoError) return Status::error(path + ": " + error);
      if (next == RecordReader::Next::kTruncated) {
        warn(path + ": " + error + " at offset " + std::to_string(reader.offset()) + ", cut off");
        if (::ftruncate(state_fd_.get(), off_t(reader.offset())) != 0)
          return Status::errno_error("cannot truncate " + path, errno);
        break;
      }
      const uint64_t from = reader.offset();
      if (first_error.empty()) first_error = error + " at offset " + std::to_string(from);
      const bool more = reader.resync();
      bad.emplace_back(from, reader.offset());
      if (!more) break;
    }
    struct stat st;
    if (::fstat(state_fd_.get(), &st) != 0) return Status::errno_error("cannot stat " + path, errno);
    state_size_ = uint64_t(st.st_size);
    if (bad.empty()) return Status();
    // Keep the unreadable bytes for a human, then rewrite the journal
    // without them so they are not read again.
    std::string copy;
    for (auto [from, to] : bad) {
      const size_t old = copy.size();
      copy.resize(old + (to - from));
      ssize_t n = ::pread(state_fd_.get(), copy.data() + old, to - from, off_t(from));
      copy.resize(old + (n > 0 ? size_t(n) : 0));
    }
    const std::string name = "state." + std::to_string(clock_.now_ms()) + "." + random_hex(4);
    Status saved = replace_file(quarantine_, name, copy, options_.durable);
    warn(path + ": " + std::to_string(copy.size()) + " unreadable bytes (" + first_error + ") " +
             (saved.ok() ? "moved to quarantine/" + name : "lost: " + saved.message()),
         kQuarantinedEvent);
    return compact();
  }

  // Items from incoming/ on their way into the state journal.
  struct Batch {
    struct Added {
      size_t at, size;
      PendingItem item;
    };
    std::string bytes;
    std::vector<Added> added;
    std::map<std::string, uint64_t> advanced;  // cursors, applied once committed
  };

  // Adds one item of `journal` (read up to `end_offset`); commits when the
  // batch is big, so a large backlog is taken in with bounded memory.
  Status batch_item(Batch* batch, SpoolRecord* rec, const std::string& journal, uint64_t end_offset,
                    std::vector<PendingItem>* fresh) {
    rec->id = next_id_++;
    const size_t at = batch->bytes.size();
    encode_record(*rec, &batch->bytes);
    batch->added.push_back(Batch::Added{at, batch->bytes.size() - at, pending_from(*rec, rec->id, rec->owner_uid)});
    batch->advanced[journal] = end_offset;
    return batch->bytes.size() >= kBatchBytes ? commit_batch(batch, fresh) : Status();
  }

  Status commit_batch(Batch* batch, std::vector<PendingItem>* fresh) {
    for (const auto& [name, offset] : batch->advanced) {
      SpoolRecord cursor;
      cursor.type = RecordType::kCursor;
      cursor.file = name;
      cursor.offset = offset;
      encode_record(cursor, &batch->bytes);
    }
    // Ids of a batch that fails to commit are never used again: harmless.
    const uint64_t base = state_size_ + pending_.size();
    Status st = commit(batch->bytes);
    if (!st.ok()) return st;
    for (const Batch::Added& a : batch->added) {
      const PendingItem& p = a.item;
      add_live(p.id, LiveItem{base + a.at, uint32_t(a.size), p.attempt, p.start_ms, p.due_ms, p.owner_uid});
      fresh->push_back(a.item);
    }
    for (const auto& [name, offset] : batch->advanced) cursors_[name] = offset;
    batch->bytes.clear();  // keeps its buffer for the next batch
    batch->added.clear();
    batch->advanced.clear();
    return Status();
  }

  // Reads the new records of one journal into *batch. An error is a
  // failed commit; problems of the journal itself are in scan->problem.
  Status read_journal(int dir_fd, const std::string& name, Batch* batch, std::vector<PendingItem>* fresh,
                      JournalScan* out) {
    JournalScan& scan = *out;
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      scan.complete = errno == ENOENT;  // gone meanwhile: nothing to do
      if (!scan.complete) scan.problem = std::string("cannot stat: ") + std::strerror(errno);
      return Status();
    }
    if (!S_ISREG(st.st_mode)) {
      scan.problem = "not a regular file";
      return Status();
    }
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      scan.problem = "not a regular file";
      return Status();
    }
    if (st.st_nlink != 1) {
      scan.problem = "has " + std::to_string(st.st_nlink) + " hard links";
      return Status();
    }
    // Whether the writer is gone is decided BEFORE reading: whatever it
    // wrote before letting go is then in the file.
    scan.writer_gone = ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0;
    auto cursor = cursors_.find(name);
    const uint64_t start = cursor != cursors_.end() ? cursor->second : 0;
    if (st.st_size == 0 && scan.writer_gone) {
      scan.problem = "empty journal without a writer";
      return Status();
    }
    const uid_t owner = st.st_uid;
    RecordReader reader(fd.get(), start);
    SpoolRecord rec;
    std::string error;
    for (;;) {
      RecordReader::Next next = reader.next(&rec, &error);
      if (next == RecordReader::Next::kRecord && rec.type != RecordType::kItem) {
        next = RecordReader::Next::kCorrupt;
        error = "unexpected record type " + std::to_string(int(rec.type));
      }
      if (next == RecordReader::Next::kRecord) {
        rec.owner_uid = owner;  // the file's owner wrote it, whatever it claims
        Status batched = batch_item(batch, &rec, name, reader.offset(), fresh);
        if (!batched.ok()) return batched;
        continue;
      }
      if (next == RecordReader::Next::kEnd) {
        scan.complete = true;
      } else if (next == RecordReader::Next::kTruncated) {
        if (scan.writer_gone) scan.problem = error + ", and its writer is gone";
      } else {
        scan.problem = error + " at offset " + std::to_string(reader.offset());
      }
      return Status();
    }
  }

  void handle_leftover(int dir_fd, const std::string& name) {
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st;
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      quarantine(incoming_, name, "temporary name but not a regular file");
      return;
    }
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return;  // its writer is still creating it
    if (::unlinkat(dir_fd, name.c_str(), 0) == 0)
      warn("removed leftover temporary file " + incoming_ + "/" + name + " (" +
           std::to_string(st.st_size) + " bytes) of a writer that is gone");
  }

  Status take_incoming(bool recovering, std::vector<PendingItem>* fresh) {
    Status st;
    const std::vector<std::string> names = list_directory(incoming_, &st);
    if (!st.ok()) return st;
    UniqueFd dir_fd(::open(incoming_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd.valid()) return Status::errno_error("cannot open " + incoming_, errno);

    Batch batch;
    std::vector<std::string> drained;
    std::vector<std::pair<std::string, std::string>> bad;  // name, why
    for (const std::string& name : names) {
      if (name.starts_with(kTmpPrefix)) {
        if (recovering) handle_leftover(dir_fd.get(), name);
        continue;
      }
      if (!is_journal_name(name)) {
        bad.emplace_back(name, "not a spool journal name");
        continue;
      }
      JournalScan scan;
      st = read_journal(dir_fd.get(), name, &batch, fresh, &scan);
      if (!st.ok()) return st;
      if (!scan.problem.empty())
        bad.emplace_back(name, scan.problem);
      else if (scan.complete && scan.writer_gone)
        drained.push_back(name);
    }
    if (recovering) {  // cursors of journals that are gone
      for (auto it = cursors_.begin(); it != cursors_.end();)
        it = std::binary_search(names.begin(), names.end(), it->first) ? std::next(it) : cursors_.erase(it);
    }
    st = commit_batch(&batch, fresh);
    if (!st.ok()) return st;
    // Only now that the items are durably ours may their journals go.
    for (const std::string& name : drained) {
      ::unlinkat(dir_fd.get(), name.c_str(), 0);
      cursors_.erase(name);
    }
    for (const auto& [name, why] : bad) {
      quarantine(incoming_, name, why);
      cursors_.erase(name);
    }
    return maybe_compact();
  }

  // Appends the pending updates and `batch` with one write, then one
  // fdatasync when durable.
  Status commit(std::string_view batch) {
    if (pending_.empty() && batch.empty()) return Status();
    // Two writes rather than a copy of a batch of megabytes into pending_.
    Status st = write_all(state_fd_.get(), pending_, "state journal");
    if (st.ok()) st = write_all(state_fd_.get(), batch, "state journal");
    if (!st.ok()) {
      // Cut off whatever part got written: the journal stays a sequence
      // of whole records.
      if (::ftruncate(state_fd_.get(), off_t(state_size_)) != 0)
        warn("cannot cut a failed write off the state journal: " + std::string(std::strerror(errno)));
      return st;
    }
    state_size_ += pending_.size() + batch.size();
    pending_.clear();
    if (options_.durable && ::fdatasync(state_fd_.get()) != 0)
      return Status::errno_error("cannot fdatasync state journal", errno);
    return Status();
  }

  Status maybe_compact() {
    if (state_size_ < options_.compact_min_bytes || live_bytes_ * 2 >= state_size_) return Status();
    return compact();
  }

  // Rewrites the state journal with only the live items (as they are now)
  // and the cursors of journals still in incoming/.
  Status compact() {
    Status st = commit("");
    if (!st.ok()) return st;
    const std::string tmp = state_dir_ + "/" + std::string(kTmpPrefix) + kStateName + "." + random_hex(4);
    UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return Status::errno_error("cannot create " + tmp, errno);
    std::vector<std::pair<uint64_t, uint32_t>> placed;  // in id order, as live_ goes
    placed.reserve(live_.size());
    std::string buf;
    uint64_t written = 0;
    auto fail = [&](Status why) {
      ::unlink(tmp.c_str());
      return why;
    };
    SpoolRecord rec;
    live_.for_each([&](uint64_t id, const LiveItem& item) {
      st = read_item(id, item, &rec);
      if (!st.ok()) return false;
      rec.id = id;
      rec.owner_uid = item.owner_uid;
      rec.attempt = item.attempt;
      rec.start_ms = item.start_ms;
      rec.due_ms = item.due_ms;
      const size_t at = buf.size();
      encode_record(rec, &buf);
      placed.emplace_back(written + at, uint32_t(buf.size() - at));
      if (buf.size() >= kReadChunk) {
        st = write_all(fd.get(), buf, tmp);
        if (!st.ok()) return false;
        written += buf.size();
        buf.clear();
      }
      return true;
    });
    if (!st.ok()) return fail(st);
    for (const auto& [file, offset] : cursors_) {
      SpoolRecord cursor;
      cursor.type = RecordType::kCursor;
      cursor.file = file;
      cursor.offset = offset;
      encode_record(cursor, &buf);
    }
    st = write_all(fd.get(), buf, tmp);
    if (!st.ok()) return fail(st);
    written += buf.size();
    if (options_.durable && ::fsync(fd.get()) != 0) return fail(Status::errno_error("cannot fsync " + tmp, errno));
    const std::string path = state_dir_ + "/" + kStateName;
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      return fail(Status::errno_error("cannot rename " + tmp + " to " + path, errno));
    if (options_.durable) {
      st = fsync_directory(state_dir_);
      if (!st.ok()) return st;
    }
    state_fd_ = std::move(fd);
    state_size_ = written;
    live_bytes_ = 0;
    size_t next = 0;
    live_.for_each([&](uint64_t, LiveItem& item) {
      std::tie(item.offset, item.size) = placed[next++];
      live_bytes_ += item.size;
      return true;
    });
    return Status();
  }

  Options options_;
  const Clock& clock_;
  EventSink& events_;
  std::string incoming_, state_dir_, quarantine_, control_;
  UniqueFd state_fd_;
  UniqueFd inotify_;
  uint64_t state_size_ = 0;  // bytes written to the state journal
  uint64_t live_bytes_ = 0;  // of them, ITEM records of live items
  std::string pending_;      // UPDATE/DONE records until sync()
  LiveItems live_;
  std::map<std::string, uint64_t> cursors_;  // incoming journal -> read up to
  uint64_t next_id_ = 1;
  std::set<std::string> unmovable_;  // warned about once already
};

}  // namespace

ItemKey item_key(uid_t owner, std::string_view store_path, std::string_view token) {
  std::string input;
  for (int i = 0; i < 4; i++) input.push_back(char((uint32_t(owner) >> (8 * i)) & 0xff));
  const uint32_t len = uint32_t(store_path.size());
  for (int i = 0; i < 4; i++) input.push_back(char((len >> (8 * i)) & 0xff));
  input.append(store_path);
  input.append(token);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  ItemKey key{};
  if (EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha256(), nullptr) == 1)
    std::memcpy(key.data(), digest, std::min<size_t>(key.size(), digest_len));
  return key;
}

Status Spool::open(const Options& options, const Clock& clock, EventSink& events,
                   std::unique_ptr<Spool>* out) {
  if (options.dir.empty() || options.dir[0] != '/')
    return Status::error("spool directory must be an absolute path: " + options.dir);
  auto spool = std::make_unique<SpoolImpl>(options, clock, events);
  Status st = spool->init();
  if (!st.ok()) return st;
  *out = std::move(spool);
  return Status();
}

SenderLock::~SenderLock() { ::close(fd_); }

Status SenderLock::acquire(const std::string& dir, int stop_fd, std::unique_ptr<SenderLock>* out) {
  const std::string path = dir + "/sender.lock";
  // The first sender on a fresh system comes before Spool::open() made it.
  if (::mkdir(dir.c_str(), ::geteuid() == 0 ? kRootSpoolMode : 0700) != 0 && errno != EEXIST)
    return Status::errno_error("cannot create spool directory " + dir, errno);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status::errno_error("cannot open " + path, errno);
  // Watch first, then try: a holder that lets go in between still wakes us.
  UniqueFd watch(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!watch.valid()) return Status::errno_error("inotify_init1", errno);
  if (::inotify_add_watch(watch.get(), path.c_str(), IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) < 0)
    return Status::errno_error("cannot watch " + path, errno);
  for (;;) {
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) break;
    if (errno != EWOULDBLOCK && errno != EINTR) return Status::errno_error("cannot lock " + path, errno);
    pollfd fds[2] = {{watch.get(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return Status::errno_error("poll", errno);
    if (fds[1].revents != 0) return Status();
    alignas(inotify_event) char buf[4096];
    while (::read(watch.get(), buf, sizeof(buf)) > 0) {
    }
  }
  // The holder's pid, for doveadm.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) < 0)
    return Status::errno_error("cannot write " + path, errno);
  out->reset(new SenderLock(fd.release()));
  return Status();
}

namespace {

// What list_spool() knows of an item while it replays the state journal.
struct ListedItem {
  std::string addr, token_hash;
  uint32_t attempt = 0;
  int64_t start_ms = 0, due_ms = 0;
  uid_t owner_uid = 0;
};

// Replays state/journal read-only: live items and cursors.
Status replay_for_listing(const std::string& path, std::map<uint64_t, ListedItem>* items,
                          std::map<std::string, uint64_t>* cursors) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return errno == ENOENT ? Status() : Status::errno_error("cannot open " + path, errno);
  RecordReader reader(fd.get(), 0);
  SpoolRecord rec;
  std::string error;
  for (;;) {
    RecordReader::Next next = reader.next(&rec, &error);
    if (next == RecordReader::Next::kCorrupt) {
      if (!reader.resync()) break;
      continue;
    }
    if (next == RecordReader::Next::kIoError) return Status::error(path + ": " + error);
    if (next != RecordReader::Next::kRecord) break;
    switch (rec.type) {
      case RecordType::kItem:
        (*items)[rec.id] = ListedItem{rec.addr, token_hash(rec.token), rec.attempt, rec.start_ms,
                                      rec.due_ms, uid_t(rec.owner_uid)};
        break;
      case RecordType::kUpdate:
        if (auto it = items->find(rec.id); it != items->end()) {
          it->second.attempt = rec.attempt;
          it->second.start_ms = rec.start_ms;
          it->second.due_ms = rec.due_ms;
        }
        break;
      case RecordType::kDone:
        items->erase(rec.id);
        break;
      case RecordType::kCursor:
        (*cursors)[rec.file] = rec.offset;
        break;
    }
  }
  return Status();
}

cmn_spool_item_info_t item_info(const ListedItem& item, bool accepted) {
  cmn_spool_item_info_t info{};
  info.addr = item.addr.c_str();
  info.token_hash = item.token_hash.c_str();
  info.attempt = item.attempt;
  info.start_ms = item.start_ms;
  info.due_ms = item.due_ms;
  info.owner_uid = item.owner_uid;
  info.accepted = accepted ? 1 : 0;
  return info;
}

}  // namespace

Status list_spool(const std::string& dir, const std::string& addr_filter,
                  const std::function<void(const cmn_spool_item_info_t&)>& fn) {
  std::map<uint64_t, ListedItem> items;
  std::map<std::string, uint64_t> cursors;
  Status st = replay_for_listing(dir + "/state/" + kStateName, &items, &cursors);
  if (!st.ok()) return st;
  for (const auto& [id, item] : items)
    if (addr_filter.empty() || item.addr == addr_filter) fn(item_info(item, true));

  const std::string incoming = dir + "/incoming";
  for (const std::string& name : list_directory(incoming, &st)) {
    if (!is_journal_name(name)) continue;
    UniqueFd fd(::open((incoming + "/" + name).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat info;
    if (!fd.valid() || ::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) continue;
    auto cursor = cursors.find(name);
    RecordReader reader(fd.get(), cursor != cursors.end() ? cursor->second : 0);
    SpoolRecord rec;
    std::string error;
    while (reader.next(&rec, &error) == RecordReader::Next::kRecord && rec.type == RecordType::kItem) {
      if (!addr_filter.empty() && rec.addr != addr_filter) continue;
      ListedItem item{rec.addr, token_hash(rec.token), rec.attempt, rec.start_ms, rec.due_ms, info.st_uid};
      fn(item_info(item, false));
    }
  }
  return st;
}

Status read_spool_status(const std::string& dir, cmn_spool_status_t* out) {
  *out = cmn_spool_status_t{};
  const std::string status_path = dir + "/status";
  UniqueFd status_fd(::open(status_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (status_fd.valid()) {
    std::string text(64 * 1024, '\0');
    ssize_t n = ::read(status_fd.get(), text.data(), text.size());
    text.resize(n > 0 ? size_t(n) : 0);
    nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) return Status::error(status_path + " is not valid JSON");
    auto num = [](const nlohmann::json& obj, const char* key) -> int64_t {
      auto it = obj.find(key);
      return it != obj.end() && it->is_number() ? it->get<int64_t>() : 0;
    };
    out->sender_pid = pid_t(num(doc, "sender_pid"));
    out->sender_started_ms = num(doc, "started_ms");
    out->stats_ms = num(doc, "stats_ms");
    const nlohmann::json stats = doc.value("stats", nlohmann::json::object());
    if (stats.is_object()) {
      cmn_sender_stats_t& s = out->stats;
      s.enqueued = uint64_t(num(stats, "enqueued"));
      s.sent = uint64_t(num(stats, "sent"));
      s.gone = uint64_t(num(stats, "gone"));
      s.retried = uint64_t(num(stats, "retried"));
      s.dropped = uint64_t(num(stats, "dropped"));
      s.coalesced = uint64_t(num(stats, "coalesced"));
      s.quarantined = uint64_t(num(stats, "quarantined"));
      s.pending = uint64_t(num(stats, "pending"));
      s.inflight = uint64_t(num(stats, "inflight"));
    }
  } else if (errno != ENOENT) {
    return Status::errno_error("cannot open " + status_path, errno);
  }
  // Whoever holds sender.lock is the sender; a shared lock we can take
  // (and drop at once) means nobody does.
  const std::string lock_path = dir + "/sender.lock";
  UniqueFd lock_fd(::open(lock_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!lock_fd.valid() || ::flock(lock_fd.get(), LOCK_SH | LOCK_NB) == 0) {
    out->sender_pid = 0;
    return Status();
  }
  char pid[32] = {};
  if (::pread(lock_fd.get(), pid, sizeof(pid) - 1, 0) > 0) {
    // strtol, not atoi: a lock file holding a huge number is not undefined behaviour.
    const long value = std::strtol(pid, nullptr, 10);
    if (value > 0 && value <= INT_MAX) out->sender_pid = pid_t(value);
  }
  return Status();
}

Status request_flush(const std::string& dir, const std::string& addr) {
  if (addr.size() > kFlushRequestMax) return Status::error("address too long");
  return replace_file(dir + "/control", "flush." + random_hex(8), addr, false, 0644);
}

}  // namespace cmn
