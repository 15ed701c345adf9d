// The spool's on-disk record: round trips, and every kind of damage is
// rejected with an error, never a crash or a read past the input.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>

extern "C" {
#include <cmocka.h>
}

#include "spool_record.h"

using namespace cmn;

namespace {

SpoolRecord sample_item() {
  SpoolRecord rec;
  rec.type = RecordType::kItem;
  rec.id = 0x0102030405060708ull;
  rec.owner_uid = 5000;
  rec.attempt = 3;
  rec.start_ms = 1700000000123;
  rec.due_ms = -5;
  rec.addr = "alice@example.org";
  rec.store_path = "/home/vmail/mail/example.org/alice@example.org/metadata.json";
  rec.token = std::string(840, 'T');
  return rec;
}

std::string encoded(const SpoolRecord& rec) {
  std::string out;
  assert_true(encode_record(rec, &out));
  return out;
}

DecodeResult decode(std::string_view data, SpoolRecord* rec = nullptr, std::string* error = nullptr) {
  SpoolRecord ignored;
  std::string why;
  size_t size = 0;
  DecodeResult result = decode_record(data, rec ? rec : &ignored, &size, error ? error : &why);
  if (result == DecodeResult::kOk) assert_true(size <= data.size());
  if (result == DecodeResult::kCorrupt) assert_true(size >= 1);
  return result;
}

// The buffer is copied to the heap at its exact size, so ASan reports any
// read past its end.
DecodeResult decode_exact(const std::string& data, std::string* error = nullptr) {
  std::unique_ptr<char[]> copy(new char[data.size() + 1]);
  std::memcpy(copy.get(), data.data(), data.size());
  return decode(std::string_view(copy.get(), data.size()), nullptr, error);
}

void patch_crc(std::string* rec) {
  uint32_t crc = crc32c(rec->data(), 12);
  crc = crc32c(rec->data() + kRecordHeaderSize, rec->size() - kRecordHeaderSize, crc);
  for (int i = 0; i < 4; i++) (*rec)[12 + i] = char((crc >> (8 * i)) & 0xff);
}

void crc32c_matches_the_standard_check_value(void**) {
  assert_int_equal(crc32c("123456789", 9), 0xE3069283u);
  // The word-at-a-time path against the definition, a bit at a time, for
  // every length and alignment around a word, and in pieces.
  unsigned char data[80];
  for (size_t i = 0; i < sizeof(data); i++) data[i] = (unsigned char)(i * 37 + 11);
  for (size_t at = 0; at < 8; at++) {
    for (size_t len = 0; at + len <= sizeof(data); len++) {
      uint32_t slow = ~0u;
      for (size_t i = at; i < at + len; i++) {
        slow ^= data[i];
        for (int k = 0; k < 8; k++) slow = (slow & 1) ? (slow >> 1) ^ 0x82F63B78u : slow >> 1;
      }
      slow = ~slow;
      if (crc32c(data + at, len) != slow) fail_msg("crc32c of %zu bytes at %zu differs", len, at);
      const size_t half = len / 2;
      if (crc32c(data + at + half, len - half, crc32c(data + at, half)) != slow)
        fail_msg("crc32c of %zu bytes at %zu in two pieces differs", len, at);
    }
  }
}

void item_round_trips(void**) {
  SpoolRecord in = sample_item();
  std::string data = encoded(in);
  SpoolRecord out;
  size_t size = 0;
  std::string error;
  assert_int_equal(decode_record(data, &out, &size, &error), DecodeResult::kOk);
  assert_int_equal(size, data.size());
  assert_int_equal(int(out.type), int(RecordType::kItem));
  assert_true(out.id == in.id);
  assert_int_equal(out.owner_uid, in.owner_uid);
  assert_int_equal(out.attempt, in.attempt);
  assert_true(out.start_ms == in.start_ms);
  assert_true(out.due_ms == in.due_ms);
  assert_string_equal(out.addr.c_str(), in.addr.c_str());
  assert_string_equal(out.store_path.c_str(), in.store_path.c_str());
  assert_true(out.token == in.token);
}

void update_done_cursor_round_trip(void**) {
  SpoolRecord update;
  update.type = RecordType::kUpdate;
  update.id = 7;
  update.attempt = 2;
  update.due_ms = 99;
  update.start_ms = 42;
  SpoolRecord done;
  done.type = RecordType::kDone;
  done.id = 8;
  SpoolRecord cursor;
  cursor.type = RecordType::kCursor;
  cursor.file = "1000.42.1700000000000.0011223344556677.journal";
  cursor.offset = 123456789012ull;
  std::string data = encoded(update) + encoded(done) + encoded(cursor);

  SpoolRecord out;
  size_t size = 0;
  std::string error;
  std::string_view rest = data;
  assert_int_equal(decode_record(rest, &out, &size, &error), DecodeResult::kOk);
  assert_int_equal(int(out.type), int(RecordType::kUpdate));
  assert_true(out.id == 7 && out.attempt == 2 && out.due_ms == 99 && out.start_ms == 42);
  rest.remove_prefix(size);
  assert_int_equal(decode_record(rest, &out, &size, &error), DecodeResult::kOk);
  assert_true(out.type == RecordType::kDone && out.id == 8);
  rest.remove_prefix(size);
  assert_int_equal(decode_record(rest, &out, &size, &error), DecodeResult::kOk);
  assert_true(out.type == RecordType::kCursor && out.file == cursor.file && out.offset == cursor.offset);
  assert_int_equal(size, rest.size());
}

void oversized_fields_are_refused_by_the_encoder(void**) {
  SpoolRecord rec = sample_item();
  rec.token = std::string(kRecordFieldMax + 1, 'x');
  std::string out = "keep";
  assert_false(encode_record(rec, &out));
  assert_string_equal(out.c_str(), "keep");
  rec.token = std::string(kRecordFieldMax, 'x');
  rec.addr = std::string(kRecordFieldMax, 'a');
  rec.store_path = std::string(kRecordFieldMax, 'p');
  assert_true(encode_record(rec, &out));
  assert_true(out.size() - 4 <= kRecordMaxSize);
  assert_int_equal(decode(std::string_view(out).substr(4)), DecodeResult::kOk);
}

void empty_input_is_incomplete(void**) { assert_int_equal(decode_exact(""), DecodeResult::kIncomplete); }

void every_truncation_is_incomplete_never_ok(void**) {
  for (const SpoolRecord& rec : {sample_item(), SpoolRecord{}}) {
    std::string data = encoded(rec);
    for (size_t len = 0; len < data.size(); len++)
      assert_int_equal(decode_exact(data.substr(0, len)), DecodeResult::kIncomplete);
    assert_int_equal(decode_exact(data), DecodeResult::kOk);
  }
}

void every_flipped_bit_is_caught(void**) {
  SpoolRecord small;
  small.type = RecordType::kCursor;
  small.file = "x.journal";
  const std::string data = encoded(small);
  for (size_t byte = 0; byte < data.size(); byte++) {
    for (int bit = 0; bit < 8; bit++) {
      std::string bad = data;
      bad[byte] = char(bad[byte] ^ (1 << bit));
      // A length made larger only looks incomplete: the CRC catches it
      // once the bytes are there (or the journal's end says truncated).
      assert_int_not_equal(decode_exact(bad), DecodeResult::kOk);
    }
  }
}

void bad_crc_wrong_version_magic_and_length_are_named(void**) {
  const std::string good = encoded(sample_item());
  std::string error;

  std::string bad = good;
  bad[good.size() - 1] ^= 1;
  assert_int_equal(decode_exact(bad, &error), DecodeResult::kCorrupt);
  assert_non_null(strstr(error.c_str(), "checksum"));

  bad = good;
  bad[4] = 2;
  assert_int_equal(decode_exact(bad, &error), DecodeResult::kCorrupt);
  assert_non_null(strstr(error.c_str(), "version 2"));

  bad = good;
  bad[0] = 'X';
  assert_int_equal(decode_exact(bad, &error), DecodeResult::kCorrupt);
  assert_non_null(strstr(error.c_str(), "magic"));

  bad = good;
  bad[5] = 9;
  assert_int_equal(decode_exact(bad, &error), DecodeResult::kCorrupt);
  assert_non_null(strstr(error.c_str(), "type 9"));

  for (uint32_t length : {0u, 15u, uint32_t(kRecordMaxSize + 1), 0xffffffffu}) {
    bad = good;
    for (int i = 0; i < 4; i++) bad[8 + i] = char((length >> (8 * i)) & 0xff);
    assert_int_equal(decode_exact(bad, &error), DecodeResult::kCorrupt);
    assert_non_null(strstr(error.c_str(), "length"));
  }
}

void field_lengths_are_not_trusted(void**) {
  // A string length pointing past the record, with a valid CRC.
  SpoolRecord cursor;
  cursor.type = RecordType::kCursor;
  cursor.file = "abc";
  std::string bad = encoded(cursor);
  bad[kRecordHeaderSize] = char(200);
  patch_crc(&bad);
  std::string error;
  assert_int_equal(decode_exact(bad, &error), DecodeResult::kCorrupt);
  assert_non_null(strstr(error.c_str(), "malformed"));

  // Trailing bytes after the last field.
  bad = encoded(cursor) + "zz";
  bad[8] = char(bad.size());
  patch_crc(&bad);
  assert_int_equal(decode_exact(bad, &error), DecodeResult::kCorrupt);

  // A DONE record too short for its id.
  SpoolRecord done;
  done.type = RecordType::kDone;
  bad = encoded(done).substr(0, kRecordHeaderSize + 4);
  bad[8] = char(bad.size());
  patch_crc(&bad);
  assert_int_equal(decode_exact(bad, &error), DecodeResult::kCorrupt);
}

void binary_garbage_never_decodes(void**) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 20000; round++) {
    std::string data(rng() % 300, '\0');
    for (char& c : data) c = char(rng());
    if (round % 2 == 0 && data.size() >= 16) {
      // Plausible header, random rest: reaches the CRC and field checks.
      std::string head = encoded(sample_item()).substr(0, 8);
      data.replace(0, 8, head);
      uint32_t length = uint32_t(data.size());
      for (int i = 0; i < 4; i++) data[8 + i] = char((length >> (8 * i)) & 0xff);
    }
    assert_int_not_equal(decode_exact(data), DecodeResult::kOk);
  }
}

void find_record_start_skips_to_the_next_magic(void**) {
  std::string rec = encoded(sample_item());
  std::string data = "garbage" + rec;
  assert_int_equal(find_record_start(data, 0), 7);
  assert_int_equal(find_record_start(data, 8), data.size());
  // A magic cut by the end of the data still counts as a possible start.
  std::string cut = "xx" + rec.substr(0, 2);
  assert_int_equal(find_record_start(cut, 0), 2);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(crc32c_matches_the_standard_check_value),
      cmocka_unit_test(item_round_trips),
      cmocka_unit_test(update_done_cursor_round_trip),
      cmocka_unit_test(oversized_fields_are_refused_by_the_encoder),
      cmocka_unit_test(empty_input_is_incomplete),
      cmocka_unit_test(every_truncation_is_incomplete_never_ok),
      cmocka_unit_test(every_flipped_bit_is_caught),
      cmocka_unit_test(bad_crc_wrong_version_magic_and_length_are_named),
      cmocka_unit_test(field_lengths_are_not_trusted),
      cmocka_unit_test(binary_garbage_never_decodes),
      cmocka_unit_test(find_record_start_skips_to_the_next_magic),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
