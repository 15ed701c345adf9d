// File-system pieces shared by both sides of the spool: an owning file
// descriptor, directory fsync, the journal naming scheme, atomic replace.
#pragma once
#include <fcntl.h>
#include <sys/random.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#include "status.h"

namespace cmn {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

inline constexpr std::string_view kTmpPrefix = ".tmp-";
inline constexpr std::string_view kJournalSuffix = ".journal";

inline Status fsync_directory(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::errno_error("cannot open " + dir, errno);
  if (::fsync(fd.get()) != 0) return Status::errno_error("cannot fsync " + dir, errno);
  return Status();
}

inline std::string random_hex(size_t bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += size_t(n);
  }
  std::string hex;
  for (unsigned char c : raw) {
    hex.push_back(kDigits[c >> 4]);
    hex.push_back(kDigits[c & 15]);
  }
  return hex;
}

// incoming/<uid>.<pid>.<ms>.<random hex>.journal
inline std::string journal_name(uid_t uid, int64_t now_ms) {
  return std::to_string(uid) + "." + std::to_string(::getpid()) + "." + std::to_string(now_ms) +
         "." + random_hex(8) + std::string(kJournalSuffix);
}

inline bool is_journal_name(std::string_view name) {
  if (name.size() <= kJournalSuffix.size() || !name.ends_with(kJournalSuffix)) return false;
  name.remove_suffix(kJournalSuffix.size());
  for (int part = 0; part < 4; part++) {
    size_t dot = name.find('.');
    std::string_view field = part < 3 ? name.substr(0, dot) : name;
    if (field.empty() || (part < 3 && dot == std::string_view::npos)) return false;
    for (char c : field) {
      bool digit = c >= '0' && c <= '9';
      bool hex = digit || (c >= 'a' && c <= 'f');
      if (part < 3 ? !digit : !hex) return false;
    }
    if (part < 3) name.remove_prefix(dot + 1);
  }
  return true;
}

// Replaces `path` with `content`: tmp file in the same directory, rename;
// with `durable`, fsync of the file before and of the directory after.
inline Status replace_file(const std::string& dir, const std::string& name,
                           std::string_view content, bool durable, mode_t mode = 0600) {
  const std::string tmp = dir + "/" + std::string(kTmpPrefix) + name + "." + random_hex(4);
  const std::string path = dir + "/" + name;
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid()) return Status::errno_error("cannot create " + tmp, errno);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status st = Status::errno_error("cannot write " + tmp, n < 0 ? errno : ENOSPC);
      ::unlink(tmp.c_str());
      return st;
    }
    done += size_t(n);
  }
  if (durable && ::fsync(fd.get()) != 0) {
    Status st = Status::errno_error("cannot fsync " + tmp, errno);
    ::unlink(tmp.c_str());
    return st;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = Status::errno_error("cannot rename " + tmp + " to " + path, errno);
    ::unlink(tmp.c_str());
    return st;
  }
  return durable ? fsync_directory(dir) : Status();
}

}  // namespace cmn
