// Delivery side of the spool: appends the items of one message to this
// process's journal in incoming/, durably, with one write and one fdatasync.
// A journal is flock()ed while its writer lives and rotated at ~4 MiB.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace cmn {

class SpoolWriter {
 public:
  SpoolWriter(std::string spool_dir, bool durable);
  ~SpoolWriter();
  SpoolWriter(const SpoolWriter&) = delete;
  SpoolWriter& operator=(const SpoolWriter&) = delete;

  // One item per token. Files are created as the current effective uid,
  // so a process that switches uid (root lmtp) gets one journal per uid.
  Status enqueue(std::string_view addr, std::string_view token_store_path,
                 const std::vector<std::string_view>& tokens, int64_t now_ms);

 private:
  struct Journal;
  Status open_journal(uid_t uid, int64_t now_ms, std::unique_ptr<Journal>* out);

  std::string spool_dir_;
  bool durable_;
  std::map<uid_t, std::unique_ptr<Journal>> journals_;
};

}  // namespace cmn
