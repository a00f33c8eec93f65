// Errors carry the exit code of the contract, so that every tool maps them the same way:
// 0 ok, 1 anything else, 2 bad usage / config / input, 3 I/O error, 4 interrupted (resumable).
#pragma once
#include <stdexcept>
#include <string>

namespace net2net {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitBadInput = 2,
  kExitIo = 3,
  kExitInterrupted = 4,
};

class Error : public std::runtime_error {
 public:
  Error(const std::string& what, int exit_code) : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// Bad command line, bad config, bad input data: exit 2.
struct UsageError : Error {
  explicit UsageError(const std::string& what) : Error(what, kExitBadInput) {}
};
struct ConfigError : Error {
  explicit ConfigError(const std::string& what) : Error(what, kExitBadInput) {}
};
struct InputError : Error {
  explicit InputError(const std::string& what) : Error(what, kExitBadInput) {}
};
// A file that cannot be opened, read or written: exit 3.
struct IoError : Error {
  explicit IoError(const std::string& what) : Error(what, kExitIo) {}
};
// A long job stopped by a signal after writing its checkpoint: exit 4.
struct Interrupted : Error {
  explicit Interrupted(const std::string& what) : Error(what, kExitInterrupted) {}
};

// Maps any exception to the exit code of the contract.
int exit_code_of(const std::exception& e);

}  // namespace net2net
