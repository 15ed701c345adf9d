// Writes the seed corpus of fuzz_spool_record with the real encoder:
//   make_spool_record_corpus plugin/fuzz/corpus/spool_record
// Run by hand when the record format changes; the seeds are kept in git.
#include <stdio.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "spool_record.h"

namespace {

cmn::SpoolRecord item(uint64_t id, std::string token) {
  cmn::SpoolRecord r;
  r.type = cmn::RecordType::kItem;
  r.id = id;
  r.owner_uid = 1000;
  r.attempt = 0;
  r.start_ms = 1700000000000;
  r.due_ms = 1700000000000;
  r.addr = "alice@example.org";
  r.store_path = "/home/alice/metadata.json";
  r.token = std::move(token);
  return r;
}

cmn::SpoolRecord update(uint64_t id) {
  cmn::SpoolRecord r;
  r.type = cmn::RecordType::kUpdate;
  r.id = id;
  r.attempt = 3;
  r.start_ms = 1700000000000;
  r.due_ms = 1700000060000;
  return r;
}

cmn::SpoolRecord done(uint64_t id) {
  cmn::SpoolRecord r;
  r.type = cmn::RecordType::kDone;
  r.id = id;
  return r;
}

cmn::SpoolRecord cursor() {
  cmn::SpoolRecord r;
  r.type = cmn::RecordType::kCursor;
  r.file = "1000.4242.1700000000000.0011223344556677.journal";
  r.offset = 4096;
  return r;
}

std::string encode(const std::vector<cmn::SpoolRecord>& records) {
  std::string out;
  for (const cmn::SpoolRecord& r : records)
    if (!cmn::encode_record(r, &out)) return {};
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::string token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  const std::string journal = encode({item(1, token), item(2, "v2:" + token), update(1), done(2),
                                      cursor()});
  std::string flipped = encode({item(7, token)});
  flipped[40] = char(flipped[40] ^ 0x20);
  std::string wrong_version = encode({done(9)});
  wrong_version[4] = 2;
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"item", encode({item(1, token)})},
      {"update", encode({update(1)})},
      {"done", encode({done(1)})},
      {"cursor", encode({cursor()})},
      {"journal", journal},
      {"journal_truncated", journal.substr(0, journal.size() - 7)},
      {"garbage_between_records", encode({done(3)}) + "garbage\n" + encode({done(4)})},
      {"checksum_mismatch", flipped},
      {"wrong_version", wrong_version},
      {"longest_fields", encode({item(5, std::string(cmn::kRecordFieldMax, 't'))})},
  };
  for (const auto& [name, bytes] : seeds) {
    const std::string path = std::string(argv[1]) + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out || bytes.empty()) {
      fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  return 0;
}
