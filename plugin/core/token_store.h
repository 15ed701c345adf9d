// A user's device tokens in chatmail's metadata.json:
//   {"devicetoken": {"<token>": <unix-seconds>, ...}, ...other keys kept...}
// The legacy form {"devicetoken": ["tok", ...]} is read and rewritten as a
// map on the next write. Writers flock "<path>.lock", write "<path>.tmp",
// fsync, rename: the same protocol as the relay's Python code.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clock.h"
#include "event_sink.h"
#include "status.h"

namespace cmn {

struct TokenStoreOptions {
  int64_t ttl_ms = 90LL * 24 * 3600 * 1000;  // 0 = tokens never expire
  unsigned max_tokens = 32;                  // 0 = unlimited
  // How long a writer (or reader) waits for "<path>.lock" held by another
  // process before it gives up with an error; 0 = one try.
  int64_t lock_timeout_ms = 5000;
};

struct StoredToken {
  std::string token;
  int64_t refreshed_ms;
};

class TokenStore {
 public:
  TokenStore(std::string path, TokenStoreOptions options, const Clock& clock,
             EventSink& events);

  // The sender acts for the uid that wrote a spool item: with this set,
  // every operation refuses a file or folder that uid does not own, and
  // files it (re)creates get that owner.
  void act_for_uid(uid_t uid) { owner_ = uid; }

  // Adds, or refreshes the timestamp of, one token (it keeps its place).
  Status add(std::string_view token);
  // Valid (unexpired) tokens in insertion order; a missing file is empty.
  Status list(std::vector<StoredToken>* out);
  // By clear token; `removed` tells whether it was there.
  Status remove(std::string_view token, bool* removed);
  // By token_hash(); for operators who never see clear tokens.
  Status remove_by_hash(std::string_view hash, bool* removed);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  TokenStoreOptions options_;
  const Clock& clock_;
  EventSink& events_;
  std::optional<uid_t> owner_;
};

}  // namespace cmn
