// Errors as values inside the core: nothing throws across a component.
#pragma once
#include <string>
#include <utility>

namespace cmn {

class Status {
 public:
  Status() = default;
  static Status error(std::string message) { return Status(std::move(message)); }
  static Status errno_error(const std::string& what, int err);

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& message() const { return message_; }

 private:
  explicit Status(std::string message) : failed_(true), message_(std::move(message)) {}
  bool failed_ = false;
  std::string message_;
};

}  // namespace cmn
