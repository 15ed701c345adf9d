// Feeds arbitrary bytes to the spool record parser, twice:
//  - as a journal, read as the sender reads one: decode, skip what is
//    corrupt, resync at the next possible record start;
//  - as one record whose header (magic, version, length, CRC-32C) is made
//    valid first, so that the field parser behind the checksum is reached.
// Promises checked: no over-read (ASan), progress on every step, sizes
// within the input, and a decoded record re-encodes to exactly its bytes.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <string>
#include <string_view>

#include "spool_record.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "broken promise: %s\n", what);
    abort();
  }
}

void check_round_trip(const cmn::SpoolRecord& record, std::string_view bytes) {
  std::string encoded;
  check(cmn::encode_record(record, &encoded), "a decoded record can be encoded");
  check(encoded == bytes, "a decoded record re-encodes to the same bytes");
}

void read_as_journal(std::string_view data) {
  size_t pos = 0;
  while (pos < data.size()) {
    cmn::SpoolRecord record;
    size_t size = 0;
    std::string error;
    const std::string_view rest = data.substr(pos);
    switch (cmn::decode_record(rest, &record, &size, &error)) {
      case cmn::DecodeResult::kOk:
        check(size >= cmn::kRecordHeaderSize && size <= rest.size(), "record size within input");
        check_round_trip(record, rest.substr(0, size));
        pos += size;
        break;
      case cmn::DecodeResult::kCorrupt: {
        check(size >= 1 && size <= rest.size(), "corrupt size within input");
        check(!error.empty(), "a corrupt record says why");
        const size_t next = cmn::find_record_start(data, pos + 1);
        check(next > pos && next <= data.size(), "resync moves forward");
        pos = next;
        break;
      }
      case cmn::DecodeResult::kIncomplete:
        check(rest.size() < cmn::kRecordMaxSize, "incomplete only when shorter than a record");
        return;
    }
  }
}

void put_u32(std::string* bytes, size_t at, uint32_t v) {
  for (int i = 0; i < 4; i++) (*bytes)[at + size_t(i)] = char((v >> (8 * i)) & 0xff);
}

void read_with_valid_header(std::string_view data) {
  if (data.size() < cmn::kRecordHeaderSize || data.size() > cmn::kRecordMaxSize) return;
  std::string bytes(data);
  const char header[] = {char(0x9C), 'C', 'M', 'N', char(cmn::kRecordVersion)};
  bytes.replace(0, sizeof header, header, sizeof header);
  bytes[5] = char(1 + uint8_t(bytes[5]) % 4);
  bytes[6] = bytes[7] = 0;
  put_u32(&bytes, 8, uint32_t(bytes.size()));
  uint32_t crc = cmn::crc32c(bytes.data(), 12);
  crc = cmn::crc32c(bytes.data() + cmn::kRecordHeaderSize, bytes.size() - cmn::kRecordHeaderSize,
                    crc);
  put_u32(&bytes, 12, crc);

  cmn::SpoolRecord record;
  size_t size = 0;
  std::string error;
  switch (cmn::decode_record(bytes, &record, &size, &error)) {
    case cmn::DecodeResult::kOk:
      check(size == bytes.size(), "a whole valid record is consumed");
      check_round_trip(record, bytes);
      break;
    case cmn::DecodeResult::kCorrupt:
      check(error == "malformed record fields", "only the fields can be wrong");
      break;
    case cmn::DecodeResult::kIncomplete:
      check(false, "a record with a valid header is never incomplete");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  read_as_journal(input);
  read_with_valid_header(input);
  return 0;
}
