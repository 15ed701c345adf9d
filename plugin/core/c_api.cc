// The one place where C meets the C++ core: C types in, C types out, no
// exception past this file.
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

extern "C" {
#include "chatmail-notify.h"
}
#include "clock.h"
#include "sender.h"
#include "setting_value.h"
#include "spool.h"
#include "spool_writer.h"
#include "token.h"
#include "token_store.h"

using namespace cmn;

struct cmn_spool_writer {
  std::unique_ptr<SpoolWriter> writer;
};

struct cmn_sender {
  std::unique_ptr<Sender> sender;
};

namespace {

void set_error(char** errptr, const std::string& message) {
  if (errptr == nullptr) return;
  std::free(*errptr);
  *errptr = strdup(message.c_str());
}

int fail(char** errptr, const Status& st) {
  set_error(errptr, st.message());
  return -1;
}

// Runs `fn` and turns an escaping exception (allocation failure) into an
// error value.
template <typename Fn>
int guarded(char** errptr, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const std::exception& e) {
    set_error(errptr, std::string("internal error: ") + e.what());
  } catch (...) {
    set_error(errptr, "internal error");
  }
  return -1;
}

class CallbackSink final : public EventSink {
 public:
  CallbackSink(cmn_event_func* fn, void* ctx) : fn_(fn), ctx_(ctx) {}
  void emit(Event event) override {
    if (fn_ == nullptr) return;
    cmn_event_t c = to_c(event);
    fn_(ctx_, &c);
  }
  static cmn_event_t to_c(const Event& e) {
    cmn_event_t c{};
    c.level = e.level;
    c.name = e.name.empty() ? nullptr : e.name.c_str();
    c.message = e.message.c_str();
    c.addr = e.addr.empty() ? nullptr : e.addr.c_str();
    c.token_hash = e.token_hash.empty() ? nullptr : e.token_hash.c_str();
    c.http_status = e.http_status;
    c.attempt = e.attempt;
    c.count = e.count;
    return c;
  }

 private:
  cmn_event_func* fn_;
  void* ctx_;
};

class FixedClock final : public Clock {
 public:
  explicit FixedClock(int64_t now_ms) : now_ms_(now_ms) {}
  int64_t now_ms() const override { return now_ms_; }

 private:
  int64_t now_ms_;
};

TokenStoreOptions store_options(const cmn_token_store_options_t* o) {
  TokenStoreOptions options;
  options.ttl_ms = o->ttl_ms;
  options.max_tokens = o->max_tokens;
  return options;
}

SenderConfig sender_config(const cmn_sender_config_t* c) {
  SenderConfig config;
  config.url = c->url != nullptr ? c->url : "";
  config.spool_dir = c->spool_dir != nullptr ? c->spool_dir : "";
  config.ca_file = c->ca_file != nullptr ? c->ca_file : "";
  config.backoff_base_ms = c->backoff_base_ms;
  config.deadline_ms = c->deadline_ms;
  config.timeout_ms = c->timeout_ms;
  config.max_inflight = c->max_inflight;
  config.durable = c->durable != 0;
  config.max_items = c->max_items;
  return config;
}

}  // namespace

extern "C" {

void cmn_free(void* ptr) noexcept { std::free(ptr); }

int cmn_parse_duration_ms(const char* text, int64_t* out_ms, char** errptr) noexcept {
  return guarded(errptr, [&] {
    Status st = parse_duration_ms(text != nullptr ? text : "", out_ms);
    return st.ok() ? 0 : fail(errptr, st);
  });
}

int cmn_parse_uint(const char* text, uint64_t* out, char** errptr) noexcept {
  return guarded(errptr, [&] {
    Status st = parse_uint(text != nullptr ? text : "", out);
    return st.ok() ? 0 : fail(errptr, st);
  });
}

int cmn_parse_bool(const char* text, int* out, char** errptr) noexcept {
  return guarded(errptr, [&] {
    bool value = false;
    Status st = parse_bool(text != nullptr ? text : "", &value);
    if (!st.ok()) return fail(errptr, st);
    *out = value ? 1 : 0;
    return 0;
  });
}

int cmn_token_validate(const char* token, size_t len, char** errptr) noexcept {
  return guarded(errptr, [&] {
    Status st = validate_token(std::string_view(token, len));
    return st.ok() ? 0 : fail(errptr, st);
  });
}

void cmn_token_hash(const char* token, size_t len, char out[CMN_TOKEN_HASH_LEN + 1]) noexcept {
  try {
    std::string hash = token_hash(std::string_view(token, len));
    std::memcpy(out, hash.data(), CMN_TOKEN_HASH_LEN);
  } catch (...) {
    std::memset(out, '?', CMN_TOKEN_HASH_LEN);
  }
  out[CMN_TOKEN_HASH_LEN] = '\0';
}

int cmn_token_store_add(const char* path, const char* token, size_t len,
                        const cmn_token_store_options_t* opts, char** errptr) noexcept {
  return guarded(errptr, [&] {
    FixedClock clock(opts->now_ms);
    CallbackSink sink(opts->on_event, opts->event_ctx);
    TokenStore store(path, store_options(opts), clock, sink);
    Status st = store.add(std::string_view(token, len));
    return st.ok() ? 0 : fail(errptr, st);
  });
}

int cmn_token_store_list(const char* path, const cmn_token_store_options_t* opts,
                         cmn_token_func* cb, void* cb_ctx, char** errptr) noexcept {
  return guarded(errptr, [&] {
    FixedClock clock(opts->now_ms);
    CallbackSink sink(opts->on_event, opts->event_ctx);
    TokenStore store(path, store_options(opts), clock, sink);
    std::vector<StoredToken> tokens;
    Status st = store.list(&tokens);
    if (!st.ok()) return fail(errptr, st);
    for (const StoredToken& t : tokens) cb(cb_ctx, t.token.data(), t.token.size(), t.refreshed_ms);
    return int(tokens.size());
  });
}

int cmn_token_store_remove(const char* path, const char* token, size_t len,
                           const cmn_token_store_options_t* opts, char** errptr) noexcept {
  return guarded(errptr, [&] {
    FixedClock clock(opts->now_ms);
    CallbackSink sink(opts->on_event, opts->event_ctx);
    TokenStore store(path, store_options(opts), clock, sink);
    bool removed = false;
    Status st = len > 0 ? store.remove(std::string_view(token, len), &removed)
                        : store.remove_by_hash(token, &removed);
    return st.ok() ? int(removed) : fail(errptr, st);
  });
}

cmn_spool_writer_t* cmn_spool_writer_create(const char* spool_dir, int durable,
                                            char** errptr) noexcept {
  cmn_spool_writer_t* result = nullptr;
  guarded(errptr, [&] {
    if (spool_dir == nullptr || spool_dir[0] != '/')
      return fail(errptr, Status::error("spool directory must be an absolute path"));
    result = new cmn_spool_writer_t{std::make_unique<SpoolWriter>(spool_dir, durable != 0)};
    return 0;
  });
  return result;
}

void cmn_spool_writer_destroy(cmn_spool_writer_t* writer) noexcept { delete writer; }

int cmn_spool_writer_enqueue(cmn_spool_writer_t* writer, const char* addr,
                             const char* token_store_path, const char* const* tokens,
                             const size_t* token_lens, size_t n_tokens, int64_t now_ms,
                             char** errptr) noexcept {
  return guarded(errptr, [&] {
    std::vector<std::string_view> list;
    list.reserve(n_tokens);
    for (size_t i = 0; i < n_tokens; i++) list.emplace_back(tokens[i], token_lens[i]);
    Status st = writer->writer->enqueue(addr, token_store_path, list, now_ms);
    return st.ok() ? 0 : fail(errptr, st);
  });
}

void cmn_sender_config_init(cmn_sender_config_t* config) noexcept {
  static const SenderConfig defaults;
  std::memset(config, 0, sizeof(*config));
  config->url = "https://notifications.delta.chat/notify";
  config->spool_dir = "/var/spool/dovecot-chatmail-notify";
  config->ca_file = nullptr;
  config->backoff_base_ms = defaults.backoff_base_ms;
  config->deadline_ms = defaults.deadline_ms;
  config->timeout_ms = defaults.timeout_ms;
  config->max_inflight = defaults.max_inflight;
  config->durable = defaults.durable ? 1 : 0;
  config->max_items = defaults.max_items;
}

int cmn_sender_config_validate(const cmn_sender_config_t* config, char** errptr) noexcept {
  return guarded(errptr, [&] {
    Status st = sender_config(config).validate();
    return st.ok() ? 0 : fail(errptr, st);
  });
}

cmn_sender_t* cmn_sender_start(const cmn_sender_config_t* config, char** errptr) noexcept {
  cmn_sender_t* result = nullptr;
  guarded(errptr, [&] {
    std::unique_ptr<Clock> clock;
    if (config->clock != nullptr)
      clock = std::make_unique<CallbackClock>(config->clock, config->clock_ctx);
    else
      clock = std::make_unique<SystemClock>();
    std::unique_ptr<Sender> sender;
    Status st = Sender::start(sender_config(config), std::move(clock), &sender);
    if (!st.ok()) return fail(errptr, st);
    result = new cmn_sender_t{std::move(sender)};
    return 0;
  });
  return result;
}

int cmn_sender_event_fd(cmn_sender_t* sender) noexcept { return sender->sender->events().fd(); }

size_t cmn_sender_drain_events(cmn_sender_t* sender, cmn_event_func* cb, void* ctx) noexcept {
  try {
    return sender->sender->events().drain([&](const Event& e) {
      cmn_event_t c = CallbackSink::to_c(e);
      cb(ctx, &c);
    });
  } catch (...) {
    return 0;
  }
}

void cmn_sender_get_stats(cmn_sender_t* sender, cmn_sender_stats_t* out) noexcept {
  *out = sender->sender->stats();
}

int cmn_sender_stop(cmn_sender_t* sender, int64_t timeout_ms) noexcept {
  return cmn_sender_stop_and_drain(sender, timeout_ms, nullptr, nullptr);
}

int cmn_sender_stop_and_drain(cmn_sender_t* sender, int64_t timeout_ms, cmn_event_func* cb,
                              void* ctx) noexcept {
  bool in_time = false;
  try {
    in_time = sender->sender->stop(timeout_ms);
  } catch (...) {
  }
  if (cb != nullptr) cmn_sender_drain_events(sender, cb, ctx);
  delete sender;
  return in_time ? 0 : -1;
}

int cmn_spool_list(const char* spool_dir, const char* addr, cmn_spool_item_func* cb, void* ctx,
                   char** errptr) noexcept {
  return guarded(errptr, [&] {
    Status st = list_spool(spool_dir, addr != nullptr ? addr : "",
                           [&](const cmn_spool_item_info_t& item) { cb(ctx, &item); });
    return st.ok() ? 0 : fail(errptr, st);
  });
}

int cmn_spool_status(const char* spool_dir, cmn_spool_status_t* out, char** errptr) noexcept {
  return guarded(errptr, [&] {
    Status st = read_spool_status(spool_dir, out);
    return st.ok() ? 0 : fail(errptr, st);
  });
}

int cmn_spool_request_flush(const char* spool_dir, const char* addr, char** errptr) noexcept {
  return guarded(errptr, [&] {
    Status st = request_flush(spool_dir, addr != nullptr ? addr : "");
    return st.ok() ? 0 : fail(errptr, st);
  });
}

}  // extern "C"
