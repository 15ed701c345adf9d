// Feeds arbitrary bytes to TokenStore as a user's metadata.json: list, add
// and remove must never crash, and must keep their promises whatever the
// file held: an added token is listed, a removed one is gone, no event
// shows a clear token.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "token_store.h"

namespace {

constexpr char kToken[] = "fuzz-added-token-0123456789";

class FixedClock final : public cmn::Clock {
 public:
  int64_t now_ms() const override { return 1700000000000; }
};

class LeakCheckingSink final : public cmn::EventSink {
 public:
  void emit(cmn::Event event) override {
    if (event.message.find(kToken) != std::string::npos) {
      fprintf(stderr, "event shows a clear token: %s\n", event.message.c_str());
      abort();
    }
  }
};

// One folder for the whole run, on tmpfs when there is one: fsync is the
// bulk of a write on a disk and tells nothing about parsing.
const std::string& work_dir() {
  // Never destroyed: the atexit() cleanup runs after static destructors.
  static const std::string* dir = [] {
    std::string templ = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    templ += "/cmn-fuzz-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) abort();
    auto* made = new std::string(templ);
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(work_dir(), ec);
    });
    return made;
  }();
  return *dir;
}

void empty_dir(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    std::filesystem::remove_all(entry.path());
}

bool listed(cmn::TokenStore& store, const std::string& token) {
  std::vector<cmn::StoredToken> tokens;
  if (!store.list(&tokens).ok()) abort();
  for (const cmn::StoredToken& t : tokens)
    if (t.token == token) return true;
  return false;
}

void check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "broken promise: %s\n", what);
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = work_dir();
  empty_dir(dir);
  const std::string path = dir + "/metadata.json";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  }
  FixedClock clock;
  LeakCheckingSink sink;
  cmn::TokenStoreOptions options;
  options.max_tokens = 8;
  cmn::TokenStore store(path, options, clock, sink);

  std::vector<cmn::StoredToken> before;
  cmn::Status listed_status = store.list(&before);
  if (!listed_status.ok()) fprintf(stderr, "list: %s\n", listed_status.message().c_str());
  check(listed_status.ok(), "list of any file succeeds");
  check(before.size() <= options.max_tokens, "list honours max_tokens");

  bool removed = false;
  cmn::Status remove_status = store.remove(kToken, &removed);
  check(!removed || remove_status.ok(), "removed only on success");

  check(store.add(kToken).ok(), "add over any file succeeds");
  check(listed(store, kToken), "an added token is listed");
  check(store.remove(kToken, &removed).ok() && removed, "an added token can be removed");
  check(!listed(store, kToken), "a removed token is gone");
  return 0;
}
