// In-memory due-time queue of pending items, with coalescing: a new item
// whose key matches an item still waiting (not in flight) joins it.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "spool.h"

namespace cmn {

class Schedule {
 public:
  Schedule();
  ~Schedule();
  Schedule(const Schedule&) = delete;
  Schedule& operator=(const Schedule&) = delete;

  // Adds a waiting item. If a waiting item has the same key, the new one
  // joins it instead: that item's start_ms becomes the later of both, it is
  // returned through *joined (to be rescheduled in the spool) and the new
  // item is not kept (to be finished in the spool). Returns true if joined.
  bool add(const PendingItem& item, PendingItem* joined);
  // Items due at `now_ms`, at most `limit`, earliest first; they are in
  // flight afterwards.
  std::vector<PendingItem> take_due(int64_t now_ms, size_t limit);
  std::optional<int64_t> next_due_ms() const;
  // An in-flight item is done.
  void finish(uint64_t id);
  // An in-flight item waits again (with its new attempt/due); same joining
  // rule as add().
  bool requeue(const PendingItem& item, PendingItem* joined);
  // Makes waiting items (of `addr`, or all when empty) due at `now_ms`.
  size_t make_due(int64_t now_ms, const std::string& addr);

  size_t waiting() const;
  size_t inflight() const;
  std::map<uint32_t, size_t> waiting_by_attempt() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cmn
