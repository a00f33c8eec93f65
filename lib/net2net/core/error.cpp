#include "net2net/core/error.h"

namespace net2net {

int exit_code_of(const std::exception& e) {
  if (auto* err = dynamic_cast<const Error*>(&e)) return err->exit_code();
  return kExitFailure;
}

}  // namespace net2net
