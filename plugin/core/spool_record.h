// The on-disk record of the spool's journals (incoming/ and state/).
//
// Every record is self-checking: a 16-byte header (magic, version, type,
// total length, CRC-32C of everything but the CRC field) and then the
// fields of its type, little-endian, strings as u32 length + bytes.
// Decoding trusts no length: bad input is an error, never an over-read.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cmn {

enum class RecordType : uint8_t {
  kItem = 1,    // a pending item with its payload
  kUpdate = 2,  // new attempt / due / start of an item
  kDone = 3,    // the item is gone for good
  kCursor = 4,  // how far an incoming journal has been taken in
};

struct SpoolRecord {
  RecordType type = RecordType::kItem;
  uint64_t id = 0;
  uint32_t owner_uid = 0;
  uint32_t attempt = 0;
  int64_t start_ms = 0;
  int64_t due_ms = 0;
  std::string addr;        // kItem
  std::string store_path;  // kItem
  std::string token;       // kItem
  std::string file;        // kCursor: name in incoming/
  uint64_t offset = 0;     // kCursor: read up to here
};

constexpr size_t kRecordHeaderSize = 16;
constexpr size_t kRecordFieldMax = 4096;  // token, addr, store path, file name
constexpr size_t kRecordMaxSize = 64 + 3 * (4 + kRecordFieldMax);
constexpr uint8_t kRecordVersion = 1;

uint32_t crc32c(const void* data, size_t len, uint32_t crc = 0);

// Appends the encoded record to *out. False (nothing appended) when a
// field is longer than kRecordFieldMax.
bool encode_record(const SpoolRecord& record, std::string* out);

enum class DecodeResult {
  kOk,          // *record and *size are set
  kIncomplete,  // a valid beginning of a record: more bytes are needed
  kCorrupt,     // *error says why
};

// Decodes the record at the start of `data`. *size gets the length of the
// record (kOk) or of the bytes known to be bad (kCorrupt, at least 1).
DecodeResult decode_record(std::string_view data, SpoolRecord* record, size_t* size,
                           std::string* error);

// The first offset >= `from` where a record could start (the magic
// matches as far as `data` goes), or data.size().
size_t find_record_start(std::string_view data, size_t from);

}  // namespace cmn
