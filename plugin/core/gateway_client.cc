#include "gateway_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <mutex>
#include <unordered_map>

namespace cmn {

namespace {

// The gateway answers with an empty or tiny body; anything larger is not a
// gateway and is not worth the memory.
constexpr size_t kMaxResponseBody = 64 * 1024;

// The HTTP/1.1 pool is as large as max_inflight: a connection carries one
// request at a time, so any smaller pool, not max_inflight, would bound the
// rate (16 connections at a 50 ms answer: 320/s; 100: 2,000/s). The
// handshakes are paid once per connection, which stays alive between
// bursts. max_inflight is the operator's bound on concurrency anyway.
//
// HTTP/2 uses ONE connection (CURLMOPT_MAX_HOST_CONNECTIONS = 1 as soon as
// the gateway answered over HTTP/2; at the start CURLOPT_PIPEWAIT holds the
// other requests until the first connection has told by ALPN). Without it,
// whenever a connection goes away (GOAWAY: Node, nghttpx or Apache close
// the connection of libcurl 7.88 after ~1,000 streams, since 7.88 sends an
// RST_STREAM after every finished stream, which nghttp2's rapid-reset guard
// counts), every request re-queued from it opened a connection of its own
// while the new one was in its handshake: 17 connections instead of one.
// With one connection, streams beyond the server's
// SETTINGS_MAX_CONCURRENT_STREAMS wait in curl's queue.
constexpr long kHttp2Connections = 1;

// A transport failure (no HTTP answer: reset, framing error, GOAWAY) is
// tried again at once, once per submit(): the gateway cannot have acted on
// a request it never answered, and the next attempt would otherwise wait a
// whole backoff. Timeouts, refused connections and TLS failures are not
// retried here: they say the gateway is down or wrong, which a backoff suits.
bool is_transport_failure(CURLcode rc) {
  switch (rc) {
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:  // 7.88: an HTTP/2 connection closed under a stream
      return true;
    default:
      return false;
  }
}

std::once_flag curl_init_once;
CURLcode curl_init_result = CURLE_OK;

struct Request {
  uint64_t tag = 0;
  std::string body;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  size_t response_bytes = 0;
  bool body_too_large = false;
  bool retried = false;
  int64_t retry_after_ms = -1;
  char error[CURL_ERROR_SIZE] = {0};

  ~Request() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (headers != nullptr) curl_slist_free_all(headers);
  }
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Retry-After is delta-seconds or an HTTP-date; -1 when unreadable.
int64_t parse_retry_after(std::string_view value) {
  value = trim(value);
  if (value.empty()) return -1;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return 999999999LL * 1000;  // absurdly far: the deadline decides
    return std::stoll(std::string(value)) * 1000;
  }
  time_t when = curl_getdate(std::string(value).c_str(), nullptr);
  if (when < 0) return -1;
  time_t now = time(nullptr);
  return when > now ? int64_t(when - now) * 1000 : 0;
}

size_t on_header(char* data, size_t size, size_t n, void* ctx) {
  auto* req = static_cast<Request*>(ctx);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    req->retry_after_ms = -1;  // a new response (after a 1xx) starts afresh
  } else {
    constexpr std::string_view kName = "retry-after:";
    if (line.size() > kName.size() &&
        std::equal(kName.begin(), kName.end(), line.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); }))
      req->retry_after_ms = parse_retry_after(line.substr(kName.size()));
  }
  return size * n;
}

size_t on_body(char*, size_t size, size_t n, void* ctx) {
  auto* req = static_cast<Request*>(ctx);
  req->response_bytes += size * n;
  if (req->response_bytes > kMaxResponseBody) {
    req->body_too_large = true;
    return 0;  // aborts the transfer
  }
  return size * n;
}

}  // namespace

struct GatewayClient::Impl {
  Options options;
  CURLM* multi = nullptr;
  std::unordered_map<CURL*, std::unique_ptr<Request>> requests;
  long host_connections = 0;  // the current CURLMOPT_MAX_HOST_CONNECTIONS

  ~Impl() {
    abort_all();
    if (multi != nullptr) curl_multi_cleanup(multi);
  }

  void abort_all() {
    for (auto& [easy, req] : requests) curl_multi_remove_handle(multi, easy);
    requests.clear();
  }

  Status configure(Request* req) {
    CURL* e = req->easy;
    req->headers = curl_slist_append(nullptr, "Content-Type: application/octet-stream");
    // Without this curl would wait up to a second for "100 Continue" before
    // sending a token longer than 1 KiB over HTTP/1.1.
    if (req->headers != nullptr) req->headers = curl_slist_append(req->headers, "Expect:");
    if (req->headers == nullptr) return Status::error("out of memory for request headers");

    bool ok = true;
    auto set = [&ok](CURLcode rc) { ok = ok && rc == CURLE_OK; };
    set(curl_easy_setopt(e, CURLOPT_URL, options.url.c_str()));
#if LIBCURL_VERSION_NUM >= 0x075500
    set(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"));
#endif
    set(curl_easy_setopt(e, CURLOPT_POST, 1L));
    set(curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body.data()));
    set(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(req->body.size())));
    set(curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers));
    set(curl_easy_setopt(e, CURLOPT_USERAGENT, "dovecot-chatmail-notify/" "0.1"));
    set(curl_easy_setopt(e, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_2TLS)));
    // Wait for the first connection to tell whether it multiplexes instead
    // of opening one connection per request during the handshake.
    set(curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L));
    set(curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L));
    set(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, long(options.timeout_ms)));
    set(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));
    set(curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L));
    set(curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L));
    set(curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L));
    if (!options.ca_file.empty()) set(curl_easy_setopt(e, CURLOPT_CAINFO, options.ca_file.c_str()));
    set(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header));
    set(curl_easy_setopt(e, CURLOPT_HEADERDATA, req));
    set(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body));
    set(curl_easy_setopt(e, CURLOPT_WRITEDATA, req));
    set(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->error));
    if (!ok) return Status::error("libcurl refused a request option (is it built with HTTP and TLS?)");
    return Status();
  }

  // One connection for HTTP/2, the pool for HTTP/1.1, by what the gateway
  // last answered with.
  void follow_protocol(CURL* easy) {
    long version = 0;
    if (curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK || version == 0) return;
    const long wanted = version >= CURL_HTTP_VERSION_2_0
                            ? kHttp2Connections
                            : long(GatewayClient::max_host_connections(options.max_inflight));
    if (wanted == host_connections) return;
    if (curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, wanted) == CURLM_OK) host_connections = wanted;
  }

  // Puts a request that got no HTTP answer back on the wire, once. Only with
  // no status at all: a partial answer was an answer.
  bool retry_once(Request* req, CURLcode rc) {
    long code = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
    if (req->retried || code != 0 || !is_transport_failure(rc)) return false;
    curl_multi_remove_handle(multi, req->easy);
    req->retried = true;
    req->response_bytes = 0;
    req->body_too_large = false;
    req->retry_after_ms = -1;
    req->error[0] = '\0';
    return curl_multi_add_handle(multi, req->easy) == CURLM_OK;
  }

  GatewayResult result_of(Request* req, CURLcode rc) {
    GatewayResult result;
    result.tag = req->tag;
    long code = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK || (req->body_too_large && code > 0)) {
      result.http_status = int(code);
      result.retry_after_ms = req->retry_after_ms;
    } else {
      result.error = req->error[0] != '\0' ? req->error : curl_easy_strerror(rc);
    }
    return result;
  }
};

unsigned GatewayClient::max_host_connections(unsigned max_inflight) { return std::max(max_inflight, 1u); }

GatewayClient::GatewayClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GatewayClient::~GatewayClient() = default;

Status GatewayClient::create(const Options& options, std::unique_ptr<GatewayClient>* out) {
  std::call_once(curl_init_once, [] { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (curl_init_result != CURLE_OK)
    return Status::error(std::string("libcurl init failed: ") + curl_easy_strerror(curl_init_result));
  if (options.url.empty()) return Status::error("no gateway URL");

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->multi = curl_multi_init();
  if (impl->multi == nullptr) return Status::error("curl_multi_init failed");
  // Until the first answer tells HTTP/2, the pool's bound: PIPEWAIT keeps
  // the requests waiting for the first connection's ALPN anyway.
  const long host_connections = long(max_host_connections(options.max_inflight));
  impl->host_connections = host_connections;
  bool ok = curl_multi_setopt(impl->multi, CURLMOPT_PIPELINING, long(CURLPIPE_MULTIPLEX)) == CURLM_OK &&
            curl_multi_setopt(impl->multi, CURLMOPT_MAX_HOST_CONNECTIONS, host_connections) == CURLM_OK &&
            // keep every pooled connection alive between bursts
            curl_multi_setopt(impl->multi, CURLMOPT_MAXCONNECTS, host_connections + 4) == CURLM_OK &&
            curl_multi_setopt(impl->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
                              long(std::max(options.max_inflight, 100u))) == CURLM_OK;
  if (!ok) return Status::error("libcurl refused a multi option (too old for HTTP/2 multiplexing?)");
  out->reset(new GatewayClient(std::move(impl)));
  return Status();
}

Status GatewayClient::submit(uint64_t tag, std::string_view token) {
  auto req = std::make_unique<Request>();
  req->tag = tag;
  req->body.assign(token);
  req->easy = curl_easy_init();
  if (req->easy == nullptr) return Status::error("curl_easy_init failed");
  Status st = impl_->configure(req.get());
  if (!st.ok()) return st;
  CURLMcode mc = curl_multi_add_handle(impl_->multi, req->easy);
  if (mc != CURLM_OK) return Status::error(std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc));
  CURL* easy = req->easy;
  impl_->requests.emplace(easy, std::move(req));
  return Status();
}

Status GatewayClient::wait(std::vector<WatchedFd>* fds, int timeout_ms) {
  std::vector<curl_waitfd> extra(fds->size());
  for (size_t i = 0; i < fds->size(); i++) {
    extra[i].fd = (*fds)[i].fd;
    extra[i].events = CURL_WAIT_POLLIN;
    extra[i].revents = 0;
  }
  // curl_multi_poll shortens the wait to curl's own timers by itself.
  const int timeout = timeout_ms < 0 ? 24 * 3600 * 1000 : timeout_ms;
  CURLMcode mc = curl_multi_poll(impl_->multi, extra.data(), unsigned(extra.size()), timeout, nullptr);
  if (mc != CURLM_OK) return Status::error(std::string("curl_multi_poll: ") + curl_multi_strerror(mc));
  for (size_t i = 0; i < fds->size(); i++) (*fds)[i].ready = (extra[i].revents & CURL_WAIT_POLLIN) != 0;
  return Status();
}

Status GatewayClient::perform(std::vector<GatewayResult>* done) {
  int running = 0;
  CURLMcode mc = curl_multi_perform(impl_->multi, &running);
  if (mc != CURLM_OK) return Status::error(std::string("curl_multi_perform: ") + curl_multi_strerror(mc));
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(impl_->multi, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode rc = msg->data.result;
    auto it = impl_->requests.find(easy);
    if (it == impl_->requests.end()) continue;
    impl_->follow_protocol(easy);
    if (impl_->retry_once(it->second.get(), rc)) continue;
    done->push_back(impl_->result_of(it->second.get(), rc));
    curl_multi_remove_handle(impl_->multi, easy);
    impl_->requests.erase(it);
  }
  return Status();
}

void GatewayClient::abort_all() { impl_->abort_all(); }

size_t GatewayClient::inflight() const { return impl_->requests.size(); }

}  // namespace cmn
