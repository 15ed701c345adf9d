#include "status.h"

#include <cstring>

namespace cmn {

Status Status::errno_error(const std::string& what, int err) {
  return Status(what + ": " + std::strerror(err));
}

}  // namespace cmn
