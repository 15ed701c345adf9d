// Parsing of setting values the way Dovecot writes them.
#pragma once
#include <cstdint>
#include <string_view>

#include "status.h"

namespace cmn {

// "500ms", "8s", "8 secs", "2m", "2 mins", "5h", "90d", "1w"; bare = seconds.
Status parse_duration_ms(std::string_view text, int64_t* out_ms);
Status parse_uint(std::string_view text, uint64_t* out);
Status parse_bool(std::string_view text, bool* out);

}  // namespace cmn
