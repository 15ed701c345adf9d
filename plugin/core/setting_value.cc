#include "setting_value.h"

#include <array>
#include <cctype>
#include <limits>
#include <string>

namespace cmn {

namespace {

struct TimeUnit {
  std::string_view name;
  int64_t ms;
};

constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kWeek = 7 * kDay;

// Dovecot's spellings (lib/settings-parser.c).
constexpr std::array<TimeUnit, 24> kTimeUnits{{
    {"ms", 1},          {"msec", 1},         {"msecs", 1},       {"millisecond", 1},
    {"milliseconds", 1}, {"s", kSecond},      {"sec", kSecond},   {"secs", kSecond},
    {"second", kSecond}, {"seconds", kSecond}, {"m", kMinute},     {"min", kMinute},
    {"mins", kMinute},  {"minute", kMinute}, {"minutes", kMinute}, {"h", kHour},
    {"hour", kHour},    {"hours", kHour},    {"d", kDay},        {"day", kDay},
    {"days", kDay},     {"w", kWeek},        {"week", kWeek},    {"weeks", kWeek},
}};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Leading decimal digits of `s` into *out; returns how many were read, or
// npos on overflow.
size_t read_digits(std::string_view s, uint64_t* out) {
  uint64_t value = 0;
  size_t i = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++) {
    uint64_t digit = uint64_t(s[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::string_view::npos;
    value = value * 10 + digit;
  }
  *out = value;
  return i;
}

bool lower_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  return true;
}

}  // namespace

Status parse_duration_ms(std::string_view text, int64_t* out_ms) {
  std::string_view s = trim(text);
  const std::string quoted = "invalid time interval '" + std::string(text) + "'";
  uint64_t number = 0;
  size_t digits = read_digits(s, &number);
  if (digits == std::string_view::npos) return Status::error(quoted + ": number too large");
  if (digits == 0) return Status::error(quoted + ": expected a number followed by an optional unit");
  std::string_view unit = trim(s.substr(digits));
  for (const TimeUnit& u : kTimeUnits) {
    if (!lower_equals(unit, u.name)) continue;
    if (number > uint64_t(std::numeric_limits<int64_t>::max() / u.ms))
      return Status::error(quoted + ": too large");
    *out_ms = int64_t(number) * u.ms;
    return Status();
  }
  if (unit.empty()) {
    if (number > uint64_t(std::numeric_limits<int64_t>::max() / kSecond))
      return Status::error(quoted + ": too large");
    *out_ms = int64_t(number) * kSecond;
    return Status();
  }
  return Status::error(quoted + ": unknown unit '" + std::string(unit) + "'");
}

Status parse_uint(std::string_view text, uint64_t* out) {
  std::string_view s = trim(text);
  const std::string quoted = "invalid number '" + std::string(text) + "'";
  uint64_t value = 0;
  size_t digits = read_digits(s, &value);
  if (digits == std::string_view::npos) return Status::error(quoted + ": too large");
  if (digits == 0 || digits != s.size())
    return Status::error(quoted + ": expected an unsigned decimal number");
  *out = value;
  return Status();
}

Status parse_bool(std::string_view text, bool* out) {
  std::string_view s = trim(text);
  for (std::string_view yes : {"yes", "true", "1"})
    if (lower_equals(s, yes)) {
      *out = true;
      return Status();
    }
  for (std::string_view no : {"no", "false", "0"})
    if (lower_equals(s, no)) {
      *out = false;
      return Status();
    }
  return Status::error("invalid boolean '" + std::string(text) + "': expected yes or no");
}

}  // namespace cmn
