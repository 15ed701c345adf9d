// Setting values as Dovecot writes them.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <string>

extern "C" {
#include <cmocka.h>
}

#include "setting_value.h"

using namespace cmn;

namespace {

int64_t duration(const char* text) {
  int64_t ms = -1;
  Status st = parse_duration_ms(text, &ms);
  if (!st.ok()) fail_msg("'%s' was refused: %s", text, st.message().c_str());
  return ms;
}

std::string duration_error(const char* text) {
  int64_t ms = -1;
  Status st = parse_duration_ms(text, &ms);
  if (st.ok()) fail_msg("'%s' was accepted as %lld ms", text, (long long)ms);
  return st.message();
}

void every_dovecot_time_unit_is_understood(void**) {
  for (const char* t : {"250ms", "250msec", "250msecs", "250millisecond", "250milliseconds"})
    assert_int_equal(duration(t), 250);
  for (const char* t : {"8s", "8sec", "8secs", "8second", "8seconds", "8"})
    assert_int_equal(duration(t), 8000);
  for (const char* t : {"2m", "2min", "2mins", "2minute", "2minutes"})
    assert_int_equal(duration(t), 120000);
  for (const char* t : {"5h", "5hour", "5hours"}) assert_int_equal(duration(t), 5LL * 3600 * 1000);
  for (const char* t : {"90d", "90day", "90days"})
    assert_int_equal(duration(t), 90LL * 86400 * 1000);
  for (const char* t : {"1w", "1week", "1weeks"}) assert_int_equal(duration(t), 7LL * 86400 * 1000);
}

void a_space_before_the_unit_and_any_case_are_fine(void**) {
  assert_int_equal(duration("8 secs"), 8000);
  assert_int_equal(duration("  2 MIN "), 120000);
  assert_int_equal(duration("0"), 0);
}

void an_unknown_unit_is_named_in_the_error(void**) {
  assert_string_equal(duration_error("8x").c_str(), "invalid time interval '8x': unknown unit 'x'");
  assert_true(duration_error("8 fortnights").find("unknown unit 'fortnights'") != std::string::npos);
}

void missing_numbers_and_negative_values_are_refused(void**) {
  for (const char* t : {"", "s", "-5s", "1.5s", "  "})
    assert_true(duration_error(t).find("invalid time interval") == 0);
}

void overflow_is_refused(void**) {
  assert_true(duration_error("99999999999999999999999s").find("too large") != std::string::npos);
  assert_true(duration_error("9223372036854775807w").find("too large") != std::string::npos);
  assert_true(duration_error("9223372036854775807").find("too large") != std::string::npos);
  assert_int_equal(duration("9223372036854775807ms"), INT64_MAX);
}

void unsigned_numbers(void**) {
  uint64_t v = 0;
  assert_true(parse_uint("100", &v).ok());
  assert_int_equal(v, 100);
  assert_true(parse_uint("18446744073709551615", &v).ok());
  assert_true(v == UINT64_MAX);
  assert_false(parse_uint("18446744073709551616", &v).ok());
  assert_false(parse_uint("-1", &v).ok());
  assert_false(parse_uint("10k", &v).ok());
  Status st = parse_uint("", &v);
  assert_string_equal(st.message().c_str(), "invalid number '': expected an unsigned decimal number");
}

void booleans(void**) {
  bool b = false;
  for (const char* t : {"yes", "YES", "true", "1"}) {
    b = false;
    assert_true(parse_bool(t, &b).ok());
    assert_true(b);
  }
  for (const char* t : {"no", "No", "false", "0"}) {
    b = true;
    assert_true(parse_bool(t, &b).ok());
    assert_false(b);
  }
  Status st = parse_bool("maybe", &b);
  assert_string_equal(st.message().c_str(), "invalid boolean 'maybe': expected yes or no");
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_dovecot_time_unit_is_understood),
      cmocka_unit_test(a_space_before_the_unit_and_any_case_are_fine),
      cmocka_unit_test(an_unknown_unit_is_named_in_the_error),
      cmocka_unit_test(missing_numbers_and_negative_values_are_refused),
      cmocka_unit_test(overflow_is_refused),
      cmocka_unit_test(unsigned_numbers),
      cmocka_unit_test(booleans),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
