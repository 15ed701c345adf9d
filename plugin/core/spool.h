// Sender side of the spool (one owner at a time: see SenderLock).
//
//   <dir>/incoming/   journals appended by delivering processes
//   <dir>/state/      the sender's own journal of accepted items
//   <dir>/quarantine/ whatever could not be read, with one warning each
//   <dir>/control/    requests from doveadm (flush)
//   <dir>/sender.lock, <dir>/status
#pragma once
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clock.h"
#include "event_sink.h"
#include "status.h"

extern "C" {
#include "chatmail-notify.h"
}

namespace cmn {

// Items with the same key (same uid, token store and token) coalesce.
using ItemKey = std::array<uint8_t, 16>;
ItemKey item_key(uid_t owner, std::string_view store_path, std::string_view token);

struct PendingItem {
  uint64_t id = 0;
  uid_t owner_uid = 0;
  uint32_t attempt = 0;  // attempts already made
  int64_t start_ms = 0;  // the deadline counts from here
  int64_t due_ms = 0;
  ItemKey key{};
  std::string addr;
};

struct ItemPayload {
  std::string addr;
  std::string store_path;
  std::string token;
};

class Spool {
 public:
  struct Options {
    std::string dir;
    bool durable = true;
    // When more items than this are pending, <dir>/full exists and
    // SpoolWriter refuses new items (0 = no cap).
    uint64_t max_items = 0;
    // The state journal is compacted when it is at least this big and
    // less than half of it is live.
    uint64_t compact_min_bytes = 4 * 1024 * 1024;
  };
  static Status open(const Options& options, const Clock& clock, EventSink& events,
                     std::unique_ptr<Spool>* out);
  virtual ~Spool() = default;

  // Replays the state journal, then takes in whatever incoming/ holds.
  // Leftover temporary files are removed; bad files or records are moved
  // to quarantine/ with one warning each.
  virtual Status recover(std::vector<PendingItem>* live) = 0;
  // Takes in new items from incoming/; they are durably the sender's when
  // this returns.
  virtual Status ingest(std::vector<PendingItem>* fresh) = 0;
  virtual Status payload(uint64_t id, ItemPayload* out) = 0;
  // Records a changed attempt / due / start of an item.
  virtual Status reschedule(const PendingItem& item) = 0;
  // The item is gone for good (sent, token gone, dropped, joined).
  virtual Status finish(uint64_t id) = 0;
  // Group commit of reschedule()/finish() when durable.
  virtual Status sync() = 0;

  // Readable when incoming/ or control/ changed; clear_watch() consumes that.
  virtual int watch_fd() const = 0;
  virtual void clear_watch() = 0;
  // Flush requests from doveadm: addresses, "" meaning every item.
  virtual std::vector<std::string> take_flush_requests() = 0;
  // Writes <dir>/status for doveadm (tmp + rename, no fsync).
  virtual Status publish_status(const cmn_sender_stats_t& stats, int64_t started_ms) = 0;
};

// The exclusive right to send from a spool: flock on <dir>/sender.lock.
class SenderLock {
 public:
  // Waits until the lock is ours or `stop_fd` becomes readable (then
  // *acquired stays false). No polling: it sleeps on inotify events of the
  // lock file.
  static Status acquire(const std::string& dir, int stop_fd, std::unique_ptr<SenderLock>* out);
  ~SenderLock();
  SenderLock(const SenderLock&) = delete;
  SenderLock& operator=(const SenderLock&) = delete;

 private:
  explicit SenderLock(int fd) : fd_(fd) {}
  int fd_;
};

// Read-only views for doveadm.
Status list_spool(const std::string& dir, const std::string& addr_filter,
                  const std::function<void(const cmn_spool_item_info_t&)>& fn);
Status read_spool_status(const std::string& dir, cmn_spool_status_t* out);
Status request_flush(const std::string& dir, const std::string& addr);

}  // namespace cmn
