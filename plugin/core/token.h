// Device tokens: validation and the short hash that stands for one in logs.
#pragma once
#include <string>
#include <string_view>

#include "status.h"

namespace cmn {

constexpr size_t kTokenMaxLen = 4096;
constexpr size_t kTokenHashLen = 12;

// 1..4096 bytes, printable ASCII, no space, '"' or '\'.
Status validate_token(std::string_view token);
// First kTokenHashLen hex digits of SHA-256(token).
std::string token_hash(std::string_view token);

}  // namespace cmn
