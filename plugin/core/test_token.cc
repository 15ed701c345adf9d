// Token validation names the rule and the offset, never the token; the hash
// is the first 12 hex digits of SHA-256.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cstring>
#include <string>

extern "C" {
#include <cmocka.h>

#include "chatmail-notify.h"
}

#include "token.h"

using namespace cmn;

namespace {

void expect_invalid(const std::string& token, const std::string& rule, size_t offset) {
  Status st = validate_token(token);
  assert_false(st.ok());
  const std::string& m = st.message();
  if (m.find(rule) == std::string::npos) fail_msg("message '%s' lacks '%s'", m.c_str(), rule.c_str());
  std::string at = "byte offset " + std::to_string(offset);
  if (m.find(at) == std::string::npos) fail_msg("message '%s' lacks '%s'", m.c_str(), at.c_str());
}

void accepts_printable_ascii_up_to_4096_bytes(void**) {
  assert_true(validate_token("openpgp:abc+/=").ok());
  assert_true(validate_token("!").ok());
  assert_true(validate_token("~").ok());
  assert_true(validate_token(std::string(4096, 'a')).ok());
  std::string all;
  for (char c = 0x21; c <= 0x7e; c++)
    if (c != '"' && c != '\\') all += c;
  assert_true(validate_token(all).ok());
}

void refuses_empty_and_too_long(void**) {
  Status empty = validate_token("");
  assert_false(empty.ok());
  assert_non_null(strstr(empty.message().c_str(), "empty"));
  Status long_one = validate_token(std::string(4097, 'a'));
  assert_false(long_one.ok());
  assert_non_null(strstr(long_one.message().c_str(), "4097"));
  assert_non_null(strstr(long_one.message().c_str(), "4096"));
}

void names_the_rule_and_offset(void**) {
  expect_invalid("abc def", "space", 3);
  expect_invalid("\"abc", "'\"'", 0);
  expect_invalid("ab\\c", "'\\'", 2);
  expect_invalid("abcd\n", "outside printable ASCII", 4);
  expect_invalid(std::string("ab\0c", 4), "outside printable ASCII", 2);
  expect_invalid("ab\x7f", "outside printable ASCII", 2);
  expect_invalid("a\xc3\xa9", "outside printable ASCII", 1);
}

void error_never_echoes_the_token(void**) {
  const std::string token = "secretSECRETsecret with space";
  Status st = validate_token(token);
  assert_false(st.ok());
  assert_null(strstr(st.message().c_str(), "secret"));
  assert_null(strstr(st.message().c_str(), "SECRET"));
}

void hash_is_sha256_prefix(void**) {
  // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
  assert_string_equal(token_hash("abc").c_str(), "ba7816bf8f01");
  // sha256("") = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  assert_string_equal(token_hash("").c_str(), "e3b0c44298fc");
  assert_int_equal(token_hash(std::string(4096, 'x')).size(), kTokenHashLen);
  assert_string_not_equal(token_hash("abd").c_str(), token_hash("abc").c_str());
}

void c_abi_agrees(void**) {
  char* err = nullptr;
  assert_int_equal(cmn_token_validate("a b", 3, &err), -1);
  assert_non_null(err);
  assert_non_null(strstr(err, "space"));
  cmn_free(err);
  err = nullptr;
  assert_int_equal(cmn_token_validate("ab", 2, &err), 0);
  assert_null(err);
  char out[CMN_TOKEN_HASH_LEN + 1];
  cmn_token_hash("abc", 3, out);
  assert_string_equal(out, "ba7816bf8f01");
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(accepts_printable_ascii_up_to_4096_bytes),
      cmocka_unit_test(refuses_empty_and_too_long),
      cmocka_unit_test(names_the_rule_and_offset),
      cmocka_unit_test(error_never_echoes_the_token),
      cmocka_unit_test(hash_is_sha256_prefix),
      cmocka_unit_test(c_abi_agrees),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
