#include "schedule.h"

#include <algorithm>
#include <set>
#include <unordered_map>
#include <utility>

namespace cmn {
namespace {

struct ItemKeyHash {
  size_t operator()(const ItemKey& key) const {
    size_t h = 0;
    for (int i = 0; i < 8; i++) h = (h << 8) | key[i];
    return h;
  }
};

}  // namespace

struct Schedule::Impl {
  // One queue for first attempts and retries alike: ordered by due time,
  // then id, so nothing waits behind an item that is not due.
  std::set<std::pair<int64_t, uint64_t>> queue;
  std::unordered_map<uint64_t, PendingItem> waiting;
  std::unordered_map<uint64_t, PendingItem> inflight;
  std::unordered_map<ItemKey, uint64_t, ItemKeyHash> waiting_by_key;

  void remove_waiting(std::unordered_map<uint64_t, PendingItem>::iterator it) {
    queue.erase({it->second.due_ms, it->first});
    waiting_by_key.erase(it->second.key);
    waiting.erase(it);
  }

  bool add(const PendingItem& item, PendingItem* joined) {
    auto same = waiting_by_key.find(item.key);
    if (same != waiting_by_key.end() && same->second != item.id) {
      PendingItem& target = waiting.at(same->second);
      target.start_ms = std::max(target.start_ms, item.start_ms);
      if (joined != nullptr) *joined = target;
      return true;
    }
    auto old = waiting.find(item.id);
    if (old != waiting.end()) remove_waiting(old);
    waiting[item.id] = item;
    queue.insert({item.due_ms, item.id});
    waiting_by_key[item.key] = item.id;
    return false;
  }
};

Schedule::Schedule() : impl_(std::make_unique<Impl>()) {}
Schedule::~Schedule() = default;

bool Schedule::add(const PendingItem& item, PendingItem* joined) { return impl_->add(item, joined); }

std::vector<PendingItem> Schedule::take_due(int64_t now_ms, size_t limit) {
  std::vector<PendingItem> due;
  while (due.size() < limit && !impl_->queue.empty() && impl_->queue.begin()->first <= now_ms) {
    auto it = impl_->waiting.find(impl_->queue.begin()->second);
    PendingItem item = std::move(it->second);
    impl_->remove_waiting(it);
    impl_->inflight[item.id] = item;
    due.push_back(std::move(item));
  }
  return due;
}

std::optional<int64_t> Schedule::next_due_ms() const {
  if (impl_->queue.empty()) return std::nullopt;
  return impl_->queue.begin()->first;
}

void Schedule::finish(uint64_t id) {
  if (impl_->inflight.erase(id) > 0) return;
  auto it = impl_->waiting.find(id);
  if (it != impl_->waiting.end()) impl_->remove_waiting(it);
}

bool Schedule::requeue(const PendingItem& item, PendingItem* joined) {
  impl_->inflight.erase(item.id);
  return impl_->add(item, joined);
}

size_t Schedule::make_due(int64_t now_ms, const std::string& addr) {
  size_t changed = 0;  // matching items, due already or made due
  for (auto& [id, item] : impl_->waiting) {
    if (!addr.empty() && item.addr != addr) continue;
    changed++;
    if (item.due_ms <= now_ms) continue;
    impl_->queue.erase({item.due_ms, id});
    item.due_ms = now_ms;
    impl_->queue.insert({item.due_ms, id});
  }
  return changed;
}

size_t Schedule::waiting() const { return impl_->waiting.size(); }
size_t Schedule::inflight() const { return impl_->inflight.size(); }

std::map<uint32_t, size_t> Schedule::waiting_by_attempt() const {
  std::map<uint32_t, size_t> counts;
  for (const auto& [id, item] : impl_->waiting) counts[item.attempt]++;
  return counts;
}

}  // namespace cmn
