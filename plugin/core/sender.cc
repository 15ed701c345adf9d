#include "sender.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "gateway_client.h"
#include "retry_policy.h"
#include "schedule.h"
#include "spool.h"
#include "token.h"
#include "token_store.h"

namespace cmn {

Status SenderConfig::validate() const {
  if (url.rfind("https://", 0) != 0 && url.rfind("http://", 0) != 0)
    return Status::error("chatmail_notify_url must be an http:// or https:// URL (got '" + url + "')");
  if (spool_dir.empty() || spool_dir[0] != '/')
    return Status::error("chatmail_notify_spool_dir must be an absolute path (got '" + spool_dir + "')");
  Status st = RetryPolicy::validate(backoff_base_ms, deadline_ms);
  if (!st.ok()) return st;
  if (timeout_ms <= 0) return Status::error("chatmail_notify_timeout must be longer than 0");
  if (max_inflight == 0) return Status::error("chatmail_notify_max_inflight must be at least 1");
  return Status();
}

namespace {

// The loop thread needs little stack: no recursion, buffers on the heap.
// curl and OpenSSL stay well below this (a TLS handshake uses ~20 KiB).
constexpr size_t kLoopStackSize = 256 * 1024;
// Drops are logged one by one while they are rare. Once one is logged,
// those of the next kDropWindowMs are held and logged together at the end
// of it: as one line each if there are at most kDropsLoggedOneByOne, else as
// one summary line. (An outage drops whole batches, but a refused connection
// reports each request in a loop turn of its own.)
constexpr size_t kDropsLoggedOneByOne = 3;
constexpr int64_t kDropWindowMs = 1000;
constexpr auto kStatusInterval = std::chrono::seconds(1);
// A 410 must not hold up sending for long when the user's store is busy;
// the token is removed at its next 410 then.
constexpr int64_t kTokenStoreLockTimeoutMs = 1000;
constexpr int kRestartDelayMs = 10000;
// A failed ingest (disk full, I/O error) is tried again after this long even
// if nothing changes in incoming/ any more: items the delivering side did
// write must not wait for the next mail.
constexpr int64_t kIngestRetryMs = 2000;

struct Counters {
  std::atomic<uint64_t> enqueued{0}, sent{0}, gone{0}, retried{0}, dropped{0}, coalesced{0},
      quarantined{0}, pending{0}, inflight{0};

  cmn_sender_stats_t snapshot() const {
    cmn_sender_stats_t s{};
    s.enqueued = enqueued;
    s.sent = sent;
    s.gone = gone;
    s.retried = retried;
    s.dropped = dropped;
    s.coalesced = coalesced;
    s.quarantined = quarantined;
    s.pending = pending;
    s.inflight = inflight;
    return s;
  }
};

// Passes the spool's events on and counts its quarantined files.
class CountingSink final : public EventSink {
 public:
  CountingSink(EventSink& next, Counters& counters) : next_(next), counters_(counters) {}
  void emit(Event event) override {
    if (event.name == "chatmail_notify_quarantined")
      counters_.quarantined += event.count > 0 ? uint64_t(event.count) : 1;
    next_.emit(std::move(event));
  }

 private:
  EventSink& next_;
  Counters& counters_;
};

// The event loop: everything it touches belongs to its one thread.
class SendLoop {
 public:
  SendLoop(const SenderConfig& config, const Clock& clock, EventSink& events, Counters& counters,
           int stop_fd)
      : config_(config),
        clock_(clock),
        events_(events),
        counters_(counters),
        spool_events_(events, counters),
        stop_fd_(stop_fd),
        policy_(config.backoff_base_ms, config.deadline_ms) {}

  // Runs until stop_fd becomes readable or a fatal error.
  Status run() {
    std::unique_ptr<SenderLock> lock;
    Status st = SenderLock::acquire(config_.spool_dir, stop_fd_, &lock);
    if (!st.ok()) return st;
    if (!lock) return Status();  // stopped while waiting for the lock
    started_ms_ = clock_.now_ms();

    Spool::Options options;
    options.dir = config_.spool_dir;
    options.durable = config_.durable;
    options.max_items = config_.max_items;
    if (!(st = Spool::open(options, clock_, spool_events_, &spool_)).ok()) return st;

    GatewayClient::Options client_options;
    client_options.url = config_.url;
    client_options.ca_file = config_.ca_file;
    client_options.timeout_ms = config_.timeout_ms;
    client_options.max_inflight = config_.max_inflight;
    if (!(st = GatewayClient::create(client_options, &client_)).ok()) return st;

    {  // scoped: the recovered list would otherwise live as long as the loop
      std::vector<PendingItem> live;
      if (!(st = spool_->recover(&live)).ok()) return st;
      for (const PendingItem& item : live) add(item);
      if (!live.empty()) log(CMN_LOG_INFO, std::to_string(live.size()) + " items recovered from the spool");
    }
    take_flush_requests();

    st = loop();
    report_drops(true);
    // Requests still in flight stay in the spool as they are.
    client_->abort_all();
    inflight_.clear();
    Status synced = spool_->sync();
    publish_status();
    client_.reset();
    spool_.reset();  // before the lock goes
    return st.ok() ? synced : st;
  }

 private:
  struct InFlight {
    PendingItem item;
    ItemPayload payload;
  };

  Status loop() {
    std::vector<WatchedFd> fds = {{spool_->watch_fd(), false}, {stop_fd_, false}};
    for (;;) {
      Status st = send_due();
      if (!st.ok()) return st;
      if (!(st = sync()).ok()) return st;
      update_gauges();
      maybe_publish_status();

      if (!(st = client_->wait(&fds, wait_timeout_ms())).ok()) return st;
      if (fds[1].ready) return Status();
      const int64_t now = clock_.now_ms();  // (a retry time too far ahead: the clock went back)
      const bool retry_ingest =
          ingest_retry_ms_ != 0 && (now >= ingest_retry_ms_ || ingest_retry_ms_ - now > kIngestRetryMs);
      if (fds[0].ready || retry_ingest) {
        if (fds[0].ready) spool_->clear_watch();
        if (!(st = ingest()).ok()) return st;
        take_flush_requests();
      }
      std::vector<GatewayResult> finished;
      if (!(st = client_->perform(&finished)).ok()) return st;
      for (const GatewayResult& result : finished) handle(result);
      // The DONE records of these answers go to the journal now, before the
      // next requests are set up: a kill -9 keeps what was written, and
      // every answer read but not written is sent again by the next sender.
      if (!(st = sync()).ok()) return st;
      report_drops(false);
    }
  }

  int wait_timeout_ms() const {
    int64_t timeout = -1;
    if (client_->inflight() < config_.max_inflight) {
      if (auto due = schedule_.next_due_ms())
        timeout = std::max<int64_t>(0, *due - clock_.now_ms());
    }
    if (ingest_retry_ms_ != 0) {
      const int64_t left = std::clamp<int64_t>(ingest_retry_ms_ - clock_.now_ms(), 0, kIngestRetryMs);
      timeout = timeout < 0 ? left : std::min<int64_t>(timeout, left);
    }
    if (!held_drops_.empty()) {
      const int64_t left = std::clamp<int64_t>(drop_window_end_ms_ - clock_.now_ms(), 0, kDropWindowMs);
      timeout = timeout < 0 ? left : std::min<int64_t>(timeout, left);
    }
    if (status_dirty_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          last_status_ + kStatusInterval - std::chrono::steady_clock::now()).count();
      left = std::max<int64_t>(0, left);
      timeout = timeout < 0 ? left : std::min<int64_t>(timeout, left);
    }
    return int(std::min<int64_t>(timeout, 24LL * 3600 * 1000));
  }

  void add(const PendingItem& item) {
    PendingItem joined;
    if (schedule_.add(item, &joined)) absorb(item.id, joined);
  }

  // `gone_id` joined `joined`: the spool keeps one item for both.
  void absorb(uint64_t gone_id, const PendingItem& joined) {
    warn_if(spool_->reschedule(joined), "spool reschedule");
    warn_if(spool_->finish(gone_id), "spool finish");
    counters_.coalesced++;
    dirty_ = true;
  }

  Status ingest() {
    std::vector<PendingItem> fresh;
    Status st = spool_->ingest(&fresh);
    if (!st.ok()) {
      // Bad input in incoming/ is the spool's to quarantine; an error here
      // is the file system's: tried again at the next change, or soon.
      log(CMN_LOG_ERROR, "spool ingest failed (trying again in " + std::to_string(kIngestRetryMs / 1000) +
                             " s): " + st.message());
      ingest_retry_ms_ = clock_.now_ms() + kIngestRetryMs;
      return Status();
    }
    ingest_retry_ms_ = 0;
    counters_.enqueued += fresh.size();
    for (const PendingItem& item : fresh) add(item);
    return Status();
  }

  void take_flush_requests() {
    for (const std::string& addr : spool_->take_flush_requests()) {
      size_t n = schedule_.make_due(clock_.now_ms(), addr);
      log(CMN_LOG_INFO, "flush" + (addr.empty() ? std::string() : " of " + addr) + ": " +
                            std::to_string(n) + " items due now");
    }
  }

  Status send_due() {
    if (client_->inflight() >= config_.max_inflight) return Status();
    const size_t room = config_.max_inflight - client_->inflight();
    for (const PendingItem& item : schedule_.take_due(clock_.now_ms(), room)) {
      InFlight f{item, {}};
      Status st = spool_->payload(item.id, &f.payload);
      if (!st.ok()) {
        log(CMN_LOG_WARNING, "spool item unreadable, dropped: " + st.message());
        schedule_.finish(item.id);
        warn_if(spool_->finish(item.id), "spool finish");
        counters_.dropped++;
        dirty_ = true;
        continue;
      }
      if (!(st = client_->submit(item.id, f.payload.token)).ok()) {
        // Out of memory or a broken curl: the item waits for a later turn.
        log(CMN_LOG_ERROR, "could not start a request: " + st.message());
        PendingItem again = item;
        again.due_ms = clock_.now_ms() + config_.backoff_base_ms;
        requeue(again);
        continue;
      }
      inflight_.emplace(item.id, std::move(f));
    }
    return Status();
  }

  void handle(const GatewayResult& result) {
    auto it = inflight_.find(result.tag);
    if (it == inflight_.end()) return;
    InFlight f = std::move(it->second);
    inflight_.erase(it);
    const std::string hash = token_hash(f.payload.token);
    const int64_t now = clock_.now_ms();
    dirty_ = true;

    Event e;
    e.name = "chatmail_notify_send_finished";
    e.addr = f.item.addr;
    e.token_hash = hash;
    e.http_status = result.http_status;
    e.attempt = int(f.item.attempt);
    e.level = CMN_LOG_INFO;  // a delivered push is part of the story a grep must tell
    e.message = "push for " + f.item.addr + " (token " + hash + ", attempt " +
                std::to_string(f.item.attempt + 1) + "): " +
                (result.http_status > 0 ? "HTTP " + std::to_string(result.http_status)
                                        : result.error);
    events_.emit(std::move(e));

    if (result.http_status == 200) {
      done(f.item.id);
      counters_.sent++;
    } else if (result.http_status == 410) {
      remove_token(f);
      done(f.item.id);
      counters_.gone++;
    } else {
      PendingItem next = f.item;
      if (policy_.next_due(f.item, now, result.retry_after_ms, &next.due_ms)) {
        next.attempt++;
        warn_if(spool_->reschedule(next), "spool reschedule");
        requeue(next);
        counters_.retried++;
      } else {
        done(f.item.id);
        counters_.dropped++;
        held_drops_.push_back({f.item.addr, hash, f.item.attempt});
      }
    }
  }

  void requeue(const PendingItem& item) {
    PendingItem joined;
    if (schedule_.requeue(item, &joined)) absorb(item.id, joined);
  }

  void done(uint64_t id) {
    schedule_.finish(id);
    warn_if(spool_->finish(id), "spool finish");
  }

  void remove_token(const InFlight& f) {
    const std::string hash = token_hash(f.payload.token);
    if (f.payload.store_path.empty()) return;
    TokenStoreOptions options;
    options.lock_timeout_ms = kTokenStoreLockTimeoutMs;
    // The user's max_tokens and token_ttl are per-user settings that the
    // sender does not know: the removal keeps every other token as it is
    // (defaults here would cut a store kept larger down to 32 tokens).
    options.max_tokens = 0;
    options.ttl_ms = 0;
    TokenStore store(f.payload.store_path, options, clock_, events_);
    store.act_for_uid(f.item.owner_uid);
    bool removed = false;
    Status st = store.remove(f.payload.token, &removed);
    Event e;
    e.addr = f.item.addr;
    e.token_hash = hash;
    e.http_status = 410;
    if (!st.ok()) {
      e.level = CMN_LOG_WARNING;
      e.message = "token " + hash + " of " + f.item.addr + " is gone but stays registered: " + st.message();
    } else {
      e.level = CMN_LOG_INFO;
      e.name = "chatmail_notify_token_removed";
      e.message = "token " + hash + " of " + f.item.addr +
                  (removed ? " is gone: removed from " : " is gone (already absent from ") +
                  f.payload.store_path + (removed ? "" : ")");
      e.count = removed ? 1 : 0;
    }
    events_.emit(std::move(e));
  }

  struct Drop {
    std::string addr, hash;
    uint32_t attempt;
  };

  // Logs the held drops unless a window is open (`all`: logs them anyway).
  void report_drops(bool all) {
    const int64_t now = clock_.now_ms();
    // (A window "open" for longer than it lasts: the clock went back.)
    const bool window_open = now < drop_window_end_ms_ && drop_window_end_ms_ - now <= kDropWindowMs;
    if (held_drops_.empty() || (!all && window_open)) return;
    drop_window_end_ms_ = now + kDropWindowMs;
    if (held_drops_.size() <= kDropsLoggedOneByOne) {
      for (const Drop& d : held_drops_) {
        Event e;
        e.level = CMN_LOG_ERROR;
        e.name = "chatmail_notify_dropped";
        e.addr = d.addr;
        e.token_hash = d.hash;
        e.attempt = int(d.attempt);
        e.count = 1;
        e.message = "push for " + d.addr + " (token " + d.hash + ") dropped after " +
                    std::to_string(d.attempt + 1) + " attempts: past the deadline";
        events_.emit(std::move(e));
      }
    } else {
      Event e;
      e.level = CMN_LOG_ERROR;
      e.name = "chatmail_notify_dropped";
      e.count = int64_t(held_drops_.size());
      e.message = std::to_string(held_drops_.size()) +
                  " pushes dropped after their last attempt: past the deadline";
      events_.emit(std::move(e));
    }
    held_drops_.clear();
  }

  Status sync() {
    if (!dirty_) return Status();
    dirty_ = false;
    status_dirty_ = true;
    Status st = spool_->sync();
    if (!st.ok()) log(CMN_LOG_ERROR, "spool sync failed: " + st.message());
    return Status();
  }

  void update_gauges() {
    counters_.pending = schedule_.waiting() + schedule_.inflight();
    counters_.inflight = client_->inflight();
  }

  void maybe_publish_status() {
    if (!status_dirty_ && published_once_) return;
    if (published_once_ && std::chrono::steady_clock::now() - last_status_ < kStatusInterval) return;
    publish_status();
  }

  void publish_status() {
    update_gauges();
    warn_if(spool_->publish_status(counters_.snapshot(), started_ms_), "status publish");
    last_status_ = std::chrono::steady_clock::now();
    status_dirty_ = false;
    published_once_ = true;
  }

  void warn_if(const Status& st, const char* what) {
    if (!st.ok()) log(CMN_LOG_WARNING, std::string(what) + ": " + st.message());
  }

  void log(cmn_log_level level, std::string message) {
    Event e;
    e.level = level;
    e.message = std::move(message);
    events_.emit(std::move(e));
  }

  const SenderConfig& config_;
  const Clock& clock_;
  EventSink& events_;
  Counters& counters_;
  CountingSink spool_events_;
  const int stop_fd_;
  const RetryPolicy policy_;
  int64_t started_ms_ = 0;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<GatewayClient> client_;
  Schedule schedule_;
  std::unordered_map<uint64_t, InFlight> inflight_;
  std::vector<Drop> held_drops_;
  int64_t drop_window_end_ms_ = 0;  // drops before this are held
  int64_t ingest_retry_ms_ = 0;     // 0: no failed ingest to try again
  bool dirty_ = false;
  bool status_dirty_ = false;
  bool published_once_ = false;
  std::chrono::steady_clock::time_point last_status_{};
};

class ThreadedSender final : public Sender {
 public:
  ThreadedSender(const SenderConfig& config, std::unique_ptr<Clock> clock)
      : config_(config), clock_(std::move(clock)) {}

  ~ThreadedSender() override {
    stop(0);
    if (stop_fd_ >= 0) close(stop_fd_);
  }

  Status start() {
    if (!events_.ok()) return Status::errno_error("eventfd for sender events", errno);
    stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (stop_fd_ < 0) return Status::errno_error("eventfd for sender stop", errno);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kLoopStackSize);
    // The host (Dovecot) relies on its signals reaching its main thread.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&thread_, &attr, &ThreadedSender::thread_main, this);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&attr);
    if (rc != 0) return Status::errno_error("cannot start the sender thread", rc);
    running_ = true;
    return Status();
  }

  EventQueue& events() override { return events_; }
  cmn_sender_stats_t stats() const override { return counters_.snapshot(); }

  bool stop(int64_t timeout_ms) override {
    if (!running_) return true;
    uint64_t one = 1;
    ssize_t ignored = write(stop_fd_, &one, sizeof(one));
    (void)ignored;
    bool in_time;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      in_time = finished_cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms)),
                                      [this] { return finished_; });
    }
    pthread_join(thread_, nullptr);
    running_ = false;
    return in_time;
  }

 private:
  static void* thread_main(void* self) {
    static_cast<ThreadedSender*>(self)->run();
    return nullptr;
  }

  void run() {
    // A failure (spool unreadable, out of memory) must not end sending for
    // good while the host process lives on: start over after a pause.
    for (;;) {
      Status st = run_once();
      if (st.ok()) break;
      Event e;
      e.level = CMN_LOG_ERROR;
      e.name = "chatmail_notify_sender_failed";
      e.message = "the sender stopped: " + st.message() + " (starting again in " +
                  std::to_string(kRestartDelayMs / 1000) + " s)";
      events_.emit(std::move(e));
      pollfd stop_request{stop_fd_, POLLIN, 0};
      if (poll(&stop_request, 1, kRestartDelayMs) != 0) break;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
    finished_cv_.notify_all();
  }

  Status run_once() {
    try {
      SendLoop loop(config_, *clock_, events_, counters_, stop_fd_);
      return loop.run();
    } catch (const std::exception& e) {
      return Status::error(std::string("internal error: ") + e.what());
    } catch (...) {
      return Status::error("internal error");
    }
  }

  const SenderConfig config_;
  std::unique_ptr<Clock> clock_;
  EventQueue events_;
  Counters counters_;
  int stop_fd_ = -1;
  pthread_t thread_{};
  bool running_ = false;
  std::mutex mutex_;
  std::condition_variable finished_cv_;
  bool finished_ = false;
};

}  // namespace

Status Sender::start(const SenderConfig& config, std::unique_ptr<Clock> clock,
                     std::unique_ptr<Sender>* out) {
  Status st = config.validate();
  if (!st.ok()) return st;
  // A missing spool folder is made at the first start (SenderLock), but
  // only inside a folder that exists: anything else is a setting to fix.
  struct stat dir;
  const std::string parent = config.spool_dir.substr(0, std::max<size_t>(1, config.spool_dir.rfind('/')));
  if (::stat(config.spool_dir.c_str(), &dir) == 0) {
    if (!S_ISDIR(dir.st_mode))
      return Status::error("chatmail_notify_spool_dir " + config.spool_dir + " is not a directory");
  } else if (errno != ENOENT || ::stat(parent.c_str(), &dir) != 0) {
    return Status::errno_error("chatmail_notify_spool_dir " + config.spool_dir, errno);
  }
  if (!clock) clock = std::make_unique<SystemClock>();
  auto sender = std::make_unique<ThreadedSender>(config, std::move(clock));
  if (!(st = sender->start()).ok()) return st;
  *out = std::move(sender);
  return Status();
}

}  // namespace cmn
