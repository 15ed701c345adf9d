#include "token.h"

#include <openssl/evp.h>

namespace cmn {

namespace {

// Names the rule a byte breaks, or nullptr; never shows the byte itself.
const char* byte_problem(unsigned char c) {
  if (c == ' ') return "a space";
  if (c == '"') return "a '\"'";
  if (c == '\\') return "a '\\'";
  if (c < 0x21 || c > 0x7e) return "a byte outside printable ASCII";
  return nullptr;
}

}  // namespace

Status validate_token(std::string_view token) {
  if (token.empty()) return Status::error("token is empty");
  if (token.size() > kTokenMaxLen)
    return Status::error("token is " + std::to_string(token.size()) + " bytes long, more than " +
                         std::to_string(kTokenMaxLen));
  for (size_t i = 0; i < token.size(); i++) {
    if (const char* problem = byte_problem(static_cast<unsigned char>(token[i])))
      return Status::error(std::string("token has ") + problem + " at byte offset " +
                           std::to_string(i));
  }
  return Status();
}

std::string token_hash(std::string_view token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(token.data(), token.size(), digest, &digest_len, EVP_sha256(), nullptr) != 1 ||
      digest_len * 2 < kTokenHashLen)
    return std::string(kTokenHashLen, '?');
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(kTokenHashLen);
  for (size_t i = 0; out.size() < kTokenHashLen; i++) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

}  // namespace cmn
