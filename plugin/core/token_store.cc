#include "token_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "token.h"

namespace cmn {

namespace {

using Json = nlohmann::ordered_json;

constexpr char kTokensKey[] = "devicetoken";
constexpr off_t kMaxFileBytes = 1 << 20;
// Deeper documents are refused: writing one back would recurse that deep.
constexpr int kMaxJsonDepth = 64;
constexpr int64_t kMaxTimestampSeconds = 100'000'000'000;
// The relay's Python code treats a timestamp this far ahead as invalid.
constexpr int64_t kFutureSlackMs = 60'000;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

enum class FileState { kMissing, kGood, kBad };

// What one read of metadata.json found.
struct Document {
  FileState state = FileState::kMissing;
  std::string bad_reason;  // kBad: why the file cannot be used
  Json root = Json::object();
  std::vector<StoredToken> tokens;  // in file order, valid tokens only
  bool legacy = false;              // "devicetoken" was a list
  std::vector<std::string> skipped;  // entries ignored, one reason each
  bool have_stat = false;            // kGood: `stat` is the file's
  struct stat stat {};
};

std::optional<int64_t> timestamp_ms(const Json& value) {
  if (value.is_number_unsigned()) {
    uint64_t s = value.get<uint64_t>();
    if (s > uint64_t(kMaxTimestampSeconds)) return std::nullopt;
    return int64_t(s) * 1000;
  }
  if (value.is_number_integer()) {
    int64_t s = value.get<int64_t>();
    if (s < 0 || s > kMaxTimestampSeconds) return std::nullopt;
    return s * 1000;
  }
  if (value.is_number_float()) {
    double s = value.get<double>();
    if (!(s >= 0 && s <= double(kMaxTimestampSeconds))) return std::nullopt;
    return int64_t(s * 1000);
  }
  return std::nullopt;
}

bool contains_token(const std::vector<StoredToken>& tokens, std::string_view token) {
  return std::any_of(tokens.begin(), tokens.end(),
                     [&](const StoredToken& t) { return t.token == token; });
}

// Accepts a token found in the file, or records why not.
void take_token(Document* doc, const std::string& token, int64_t refreshed_ms) {
  Status valid = validate_token(token);
  if (!valid.ok()) {
    doc->skipped.push_back("invalid token " + token_hash(token) + " (" + valid.message() + ")");
    return;
  }
  if (contains_token(doc->tokens, token)) return;
  doc->tokens.push_back(StoredToken{token, refreshed_ms});
}

void read_tokens(Document* doc, int64_t now_ms) {
  auto it = doc->root.find(kTokensKey);
  if (it == doc->root.end()) return;
  const Json& value = it.value();
  if (value.is_object()) {
    for (const auto& [token, stamp] : value.items()) {
      std::optional<int64_t> ms = timestamp_ms(stamp);
      if (!ms) {
        doc->skipped.push_back("token " + token_hash(token) + " has a " +
                               std::string(stamp.type_name()) +
                               " where a unix time in seconds belongs");
        continue;
      }
      take_token(doc, token, *ms);
    }
  } else if (value.is_array()) {
    doc->legacy = true;
    for (const Json& entry : value) {
      if (!entry.is_string()) {
        doc->skipped.push_back("a " + std::string(entry.type_name()) +
                               " in the token list, not a string");
        continue;
      }
      take_token(doc, entry.get<std::string>(), now_ms);
    }
  } else {
    doc->skipped.push_back(std::string("\"devicetoken\" is a ") + value.type_name() +
                           ", not a map of token to time");
  }
}

void parse_document(const std::string& text, int64_t now_ms, Document* doc) {
  bool too_deep = false;
  Json::parser_callback_t limit_depth = [&](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxJsonDepth) too_deep = true;
    return !too_deep;
  };
  Json root;
  try {
    root = Json::parse(text, limit_depth);
  } catch (const Json::parse_error& e) {
    // e.what() quotes the input around the error: it could hold a token.
    doc->state = FileState::kBad;
    doc->bad_reason = "not valid JSON (error at byte " + std::to_string(e.byte) + ")";
    return;
  } catch (const Json::exception& e) {
    // Such as a number beyond the range of a double (out_of_range 406).
    doc->state = FileState::kBad;
    doc->bad_reason = "not usable JSON (error " + std::to_string(e.id) + ")";
    return;
  }
  if (too_deep) {
    doc->state = FileState::kBad;
    doc->bad_reason = "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return;
  }
  if (!root.is_object()) {
    doc->state = FileState::kBad;
    doc->bad_reason = std::string("top level is a JSON ") + root.type_name() + ", not an object";
    return;
  }
  doc->root = std::move(root);
  read_tokens(doc, now_ms);
}

std::string describe_stat_problem(const struct stat& st) {
  if (S_ISLNK(st.st_mode)) return "a symbolic link, not a regular file";
  if (S_ISDIR(st.st_mode)) return "a directory, not a regular file";
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (st.st_size > kMaxFileBytes)
    return "larger than " + std::to_string(kMaxFileBytes) + " bytes (" +
           std::to_string(st.st_size) + ")";
  return "";
}

// The folder of metadata.json, held open so that every file operation is
// relative to the folder that was checked, whatever happens to the path.
class StoreDir {
 public:
  StoreDir(const std::string& path, std::optional<uid_t> owner) : path_(path), owner_(owner) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) {
      dir_ = ".";
      name_ = path;
    } else {
      dir_ = slash == 0 ? "/" : path.substr(0, slash);
      name_ = path.substr(slash + 1);
    }
  }

  Status open() {
    if (name_.empty() || name_ == "." || name_ == "..")
      return Status::error(path_ + ": not a path to a file");
    // Acting for a uid, the folder itself must not be a symlink either.
    int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (owner_ ? O_NOFOLLOW : 0);
    fd_ = UniqueFd(::open(dir_.c_str(), flags));
    if (!fd_.valid()) return Status::errno_error(dir_ + ": cannot open folder", errno);
    if (fstat(fd_.get(), &stat_) != 0)
      return Status::errno_error(dir_ + ": cannot stat folder", errno);
    if (owner_ && stat_.st_uid != *owner_)
      return Status::error(dir_ + ": folder is owned by uid " + std::to_string(stat_.st_uid) +
                           ", not by uid " + std::to_string(*owner_) + "; refusing to touch it");
    return Status();
  }

  const std::string& path() const { return path_; }
  std::string sibling(const std::string& suffix) const { return name_ + suffix; }
  std::string display(const std::string& name) const { return dir_ + "/" + name; }

  // A file we open must belong to the uid we act for.
  Status check_owner(const struct stat& st, const std::string& name) const {
    if (owner_ && st.st_uid != *owner_)
      return Status::error(display(name) + ": owned by uid " + std::to_string(st.st_uid) +
                           ", not by uid " + std::to_string(*owner_) + "; refusing to touch it");
    return Status();
  }

  // Fills `doc` (state, stat) and `text`; parsing is the caller's.
  Status read(Document* doc, std::string* text) const {
    struct stat st {};
    if (fstatat(fd_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return Status();
      return Status::errno_error(path_ + ": cannot stat", errno);
    }
    if (Status owned = check_owner(st, name_); !owned.ok()) return owned;
    if (owner_ && S_ISLNK(st.st_mode))
      return Status::error(path_ + ": a symbolic link; refusing to follow it for uid " +
                           std::to_string(*owner_));
    if (std::string problem = describe_stat_problem(st); !problem.empty()) {
      doc->state = FileState::kBad;
      doc->bad_reason = problem;
      return Status();
    }
    UniqueFd fd(openat(fd_.get(), name_.c_str(),
                       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT) return Status();
      return Status::errno_error(path_ + ": cannot open", errno);
    }
    // The name may have been swapped since the fstatat(): check the file we hold.
    if (fstat(fd.get(), &st) != 0) return Status::errno_error(path_ + ": cannot stat", errno);
    if (Status owned = check_owner(st, name_); !owned.ok()) return owned;
    if (std::string problem = describe_stat_problem(st); !problem.empty()) {
      doc->state = FileState::kBad;
      doc->bad_reason = problem;
      return Status();
    }
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::errno_error(path_ + ": cannot read", errno);
      if (n == 0) break;
      text->append(buf, size_t(n));
      if (text->size() > size_t(kMaxFileBytes)) {
        doc->state = FileState::kBad;
        doc->bad_reason = "larger than " + std::to_string(kMaxFileBytes) + " bytes";
        return Status();
      }
    }
    doc->state = FileState::kGood;
    doc->have_stat = true;
    doc->stat = st;
    return Status();
  }

  // Opens (creating it 0600 if needed) and flocks "<name>.lock".
  Status lock(int operation, int64_t timeout_ms, UniqueFd* out) const {
    const std::string name = sibling(".lock");
    const int flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    UniqueFd fd(openat(fd_.get(), name.c_str(), flags | O_CREAT | O_EXCL, 0600));
    bool created = fd.valid();
    if (!created && errno == EEXIST) fd = UniqueFd(openat(fd_.get(), name.c_str(), flags));
    if (!fd.valid()) return Status::errno_error(display(name) + ": cannot open lock file", errno);
    struct stat st {};
    if (fstat(fd.get(), &st) != 0)
      return Status::errno_error(display(name) + ": cannot stat lock file", errno);
    if (!S_ISREG(st.st_mode)) return Status::error(display(name) + ": lock is not a regular file");
    Status owned = created ? give_folder_owner(fd.get(), st, name) : check_owner(st, name);
    if (!owned.ok()) return owned;

    using namespace std::chrono;
    const auto deadline = steady_clock::now() + milliseconds(timeout_ms);
    auto pause = milliseconds(1);
    while (flock(fd.get(), operation | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK)
        return Status::errno_error(display(name) + ": cannot lock", errno);
      auto now = steady_clock::now();
      if (now >= deadline)
        return Status::error(display(name) + ": still locked by another process after " +
                             std::to_string(timeout_ms) + " ms");
      std::this_thread::sleep_for(std::min<steady_clock::duration>(pause, deadline - now));
      pause = std::min(pause * 2, milliseconds(50));
    }
    *out = std::move(fd);
    return Status();
  }

  // Renames a file we cannot use out of the way, never over another one.
  Status move_aside(int64_t now_ms, std::string* moved_to) const {
    const std::string base = sibling(".corrupt." + std::to_string(now_ms));
    for (int i = 0; i < 1000; i++) {
      std::string name = i == 0 ? base : base + "." + std::to_string(i);
      if (renameat2(fd_.get(), name_.c_str(), fd_.get(), name.c_str(), RENAME_NOREPLACE) == 0) {
        *moved_to = display(name);
        return Status();
      }
      if (errno != EEXIST) return Status::errno_error(path_ + ": cannot move aside", errno);
    }
    return Status::error(path_ + ": cannot move aside: too many corrupt copies");
  }

  // Writes `content` as the new file: tmp, fsync, rename, fsync the folder.
  // `old` (the file replaced, if any) gives the mode and the owner.
  Status replace(const std::string& content, const struct stat* old) const {
    const std::string tmp = sibling(".tmp");
    // A leftover tmp (or a link someone planted there) is never written through.
    if (unlinkat(fd_.get(), tmp.c_str(), 0) != 0 && errno != ENOENT)
      return Status::errno_error(display(tmp) + ": cannot remove leftover", errno);
    const mode_t mode = old != nullptr ? (old->st_mode & 0777) : 0600;
    UniqueFd fd(openat(fd_.get(), tmp.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, mode));
    if (!fd.valid()) return Status::errno_error(display(tmp) + ": cannot create", errno);
    Status st = write_tmp(fd.get(), content, mode, old, tmp);
    if (st.ok() && renameat(fd_.get(), tmp.c_str(), fd_.get(), name_.c_str()) != 0)
      st = Status::errno_error(display(tmp) + ": cannot rename to " + path_, errno);
    if (!st.ok()) {
      unlinkat(fd_.get(), tmp.c_str(), 0);
      return st;
    }
    if (fsync(fd_.get()) != 0) return Status::errno_error(dir_ + ": cannot fsync folder", errno);
    return Status();
  }

 private:
  Status write_tmp(int fd, const std::string& content, mode_t mode, const struct stat* old,
                   const std::string& name) const {
    // The umask must not narrow the mode of a file we rewrite.
    if (fchmod(fd, mode) != 0) return Status::errno_error(display(name) + ": cannot chmod", errno);
    size_t done = 0;
    while (done < content.size()) {
      ssize_t n = ::write(fd, content.data() + done, content.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::errno_error(display(name) + ": cannot write", errno);
      done += size_t(n);
    }
    if (fsync(fd) != 0) return Status::errno_error(display(name) + ": cannot fsync", errno);
    struct stat st {};
    if (fstat(fd, &st) != 0) return Status::errno_error(display(name) + ": cannot stat", errno);
    if (old == nullptr) return give_folder_owner(fd, st, name);
    return give_owner(fd, st, old->st_uid, old->st_gid, name);
  }

  // Files created as root belong to the folder's owner (the user).
  Status give_folder_owner(int fd, const struct stat& st, const std::string& name) const {
    return give_owner(fd, st, stat_.st_uid, stat_.st_gid, name);
  }

  Status give_owner(int fd, const struct stat& st, uid_t uid, gid_t gid,
                    const std::string& name) const {
    if (geteuid() != 0 || (st.st_uid == uid && st.st_gid == gid)) return Status();
    if (fchown(fd, uid, gid) != 0) return Status::errno_error(display(name) + ": cannot chown", errno);
    return Status();
  }

  std::string path_;
  std::string dir_;
  std::string name_;
  std::optional<uid_t> owner_;
  UniqueFd fd_;
  struct stat stat_ {};
};

bool is_fresh(const StoredToken& t, int64_t now_ms, int64_t ttl_ms) {
  if (ttl_ms <= 0) return true;
  return t.refreshed_ms >= now_ms - ttl_ms && t.refreshed_ms <= now_ms + kFutureSlackMs;
}

// Which tokens are among the `keep` newest; of equal times the later in
// the file counts as newer. `pinned` (the token just added) is always kept,
// even when others carry times from a clock ahead of ours.
std::vector<bool> newest(const std::vector<StoredToken>& tokens, size_t keep,
                         std::string_view pinned = {}) {
  std::vector<size_t> order(tokens.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if ((tokens[a].token == pinned) != (tokens[b].token == pinned))
      return tokens[a].token == pinned;
    if (tokens[a].refreshed_ms != tokens[b].refreshed_ms)
      return tokens[a].refreshed_ms > tokens[b].refreshed_ms;
    return a > b;
  });
  std::vector<bool> kept(tokens.size(), false);
  for (size_t i = 0; i < order.size() && i < keep; i++) kept[order[i]] = true;
  return kept;
}

// What TokenStore does once the folder is open: one read-modify-write.
class StoreSession {
 public:
  StoreSession(const std::string& path, std::optional<uid_t> owner,
               const TokenStoreOptions& options, int64_t now_ms, EventSink& events)
      : dir_(path, owner), options_(options), now_ms_(now_ms), events_(events) {}

  Status open_and_lock(int operation) {
    if (Status st = dir_.open(); !st.ok()) return st;
    return dir_.lock(operation, options_.lock_timeout_ms, &lock_);
  }

  Status read() {
    std::string text;
    if (Status st = dir_.read(&doc_, &text); !st.ok()) return st;
    if (doc_.state == FileState::kGood) parse_document(text, now_ms_, &doc_);
    if (!doc_.skipped.empty())
      warn(dir_.path() + ": ignored " + std::to_string(doc_.skipped.size()) +
           " bad entr" + (doc_.skipped.size() == 1 ? "y" : "ies") + " (first: " +
           doc_.skipped.front() + "); dropped on the next write");
    return Status();
  }

  Document& doc() { return doc_; }
  bool bad() const { return doc_.state == FileState::kBad; }
  const std::string& bad_reason() const { return doc_.bad_reason; }

  Status move_bad_file_aside() {
    std::string moved_to;
    if (Status st = dir_.move_aside(now_ms_, &moved_to); !st.ok()) return st;
    warn(dir_.path() + ": " + doc_.bad_reason + "; moved aside to " + moved_to +
         ", starting a new one");
    doc_ = Document();
    return Status();
  }

  std::vector<StoredToken> fresh_tokens() const {
    std::vector<StoredToken> fresh;
    for (const StoredToken& t : doc_.tokens)
      if (is_fresh(t, now_ms_, options_.ttl_ms)) fresh.push_back(t);
    return fresh;
  }

  // Writes `tokens` (oldest but `pinned` dropped beyond max_tokens) as the
  // new file.
  Status write(std::vector<StoredToken> tokens, std::string_view pinned = {}) {
    if (options_.max_tokens > 0 && tokens.size() > options_.max_tokens) {
      std::vector<bool> kept = newest(tokens, options_.max_tokens, pinned);
      std::vector<StoredToken> newest_tokens;
      for (size_t i = 0; i < tokens.size(); i++)
        if (kept[i]) newest_tokens.push_back(std::move(tokens[i]));
      info(dir_.path() + ": dropped the " + std::to_string(tokens.size() - newest_tokens.size()) +
           " oldest tokens beyond max_tokens=" + std::to_string(options_.max_tokens));
      tokens = std::move(newest_tokens);
    }
    Json map = Json::object();
    for (const StoredToken& t : tokens) map[t.token] = t.refreshed_ms / 1000;
    doc_.root[kTokensKey] = std::move(map);
    std::string content = doc_.root.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (Status st = dir_.replace(content, doc_.have_stat ? &doc_.stat : nullptr); !st.ok())
      return st;
    if (doc_.legacy)
      info(dir_.path() + ": converted the legacy token list to the map form");
    return Status();
  }

  void warn(std::string message) { emit(CMN_LOG_WARNING, std::move(message)); }
  void info(std::string message) { emit(CMN_LOG_INFO, std::move(message)); }

 private:
  void emit(cmn_log_level level, std::string message) {
    Event event;
    event.level = level;
    event.message = std::move(message);
    events_.emit(std::move(event));
  }

  StoreDir dir_;
  TokenStoreOptions options_;
  int64_t now_ms_;
  EventSink& events_;
  UniqueFd lock_;
  Document doc_;
};

// A path that names nothing costs one lstat() and no lock file.
bool path_missing(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) != 0 && errno == ENOENT;
}

template <typename Body>
Status guarded(const std::string& path, Body body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return Status::error(path + ": " + e.what());
  }
}

}  // namespace

TokenStore::TokenStore(std::string path, TokenStoreOptions options, const Clock& clock,
                       EventSink& events)
    : path_(std::move(path)), options_(options), clock_(clock), events_(events) {}

Status TokenStore::add(std::string_view token) {
  if (Status valid = validate_token(token); !valid.ok())
    return Status::error(path_ + ": " + valid.message());
  return guarded(path_, [&] {
    const int64_t now_ms = clock_.now_ms();
    StoreSession session(path_, owner_, options_, now_ms, events_);
    if (Status st = session.open_and_lock(LOCK_EX); !st.ok()) return st;
    if (Status st = session.read(); !st.ok()) return st;
    if (session.bad()) {
      if (Status st = session.move_bad_file_aside(); !st.ok()) return st;
    }
    std::vector<StoredToken> tokens = session.fresh_tokens();
    auto it = std::find_if(tokens.begin(), tokens.end(),
                           [&](const StoredToken& t) { return t.token == token; });
    if (it != tokens.end())
      it->refreshed_ms = now_ms;
    else
      tokens.push_back(StoredToken{std::string(token), now_ms});
    return session.write(std::move(tokens), token);
  });
}

Status TokenStore::list(std::vector<StoredToken>* out) {
  out->clear();
  if (path_missing(path_)) return Status();
  return guarded(path_, [&] {
    StoreSession session(path_, owner_, options_, clock_.now_ms(), events_);
    if (Status st = session.open_and_lock(LOCK_SH); !st.ok()) return st;
    if (Status st = session.read(); !st.ok()) return st;
    if (session.bad()) {
      session.warn(path_ + ": " + session.bad_reason() + "; read as holding no tokens");
      return Status();
    }
    std::vector<StoredToken> fresh = session.fresh_tokens();
    if (options_.max_tokens > 0 && fresh.size() > options_.max_tokens) {
      std::vector<bool> kept = newest(fresh, options_.max_tokens);
      for (size_t i = 0; i < fresh.size(); i++)
        if (kept[i]) out->push_back(std::move(fresh[i]));
    } else {
      *out = std::move(fresh);
    }
    return Status();
  });
}

namespace {

template <typename Match>
Status remove_matching(const std::string& path, std::optional<uid_t> owner,
                       const TokenStoreOptions& options, int64_t now_ms, EventSink& events,
                       Match match, bool* removed) {
  *removed = false;
  if (path_missing(path)) return Status();
  return guarded(path, [&] {
    StoreSession session(path, owner, options, now_ms, events);
    if (Status st = session.open_and_lock(LOCK_EX); !st.ok()) return st;
    if (Status st = session.read(); !st.ok()) return st;
    if (session.bad())
      return Status::error(path + ": " + session.bad_reason() + "; left as it is");
    std::vector<StoredToken> tokens = session.fresh_tokens();
    auto end = std::remove_if(tokens.begin(), tokens.end(), match);
    if (end == tokens.end()) return Status();
    tokens.erase(end, tokens.end());
    *removed = true;
    return session.write(std::move(tokens));
  });
}

}  // namespace

Status TokenStore::remove(std::string_view token, bool* removed) {
  *removed = false;
  if (Status valid = validate_token(token); !valid.ok())
    return Status::error(path_ + ": " + valid.message());
  return remove_matching(
      path_, owner_, options_, clock_.now_ms(), events_,
      [&](const StoredToken& t) { return t.token == token; }, removed);
}

Status TokenStore::remove_by_hash(std::string_view hash, bool* removed) {
  *removed = false;
  bool well_formed = hash.size() == kTokenHashLen &&
                     std::all_of(hash.begin(), hash.end(), [](char c) {
                       return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                     });
  if (!well_formed)
    return Status::error("not a token hash (" + std::to_string(kTokenHashLen) +
                         " lowercase hex digits)");
  return remove_matching(
      path_, owner_, options_, clock_.now_ms(), events_,
      [&](const StoredToken& t) { return token_hash(t.token) == hash; }, removed);
}

}  // namespace cmn
