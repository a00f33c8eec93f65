// Shared by the libFuzzer targets of tests/fuzz/ (issue 21): a scratch folder per process, the
// input written to a file there, and the line between a documented refusal and a finding.
//
// A refusal is net2net::Error and its subclasses (core/error.h: exit 2 for bad usage, config or
// input, 3 for I/O): the tools turn those into a clean message and exit code. Anything else that
// escapes our readers (nlohmann's json exceptions, c10::Error, H5::Exception, std::out_of_range,
// std::bad_alloc, ...) is a finding: the tool would die with exit 1 and a message about our
// internals, or worse. finding() prints what escaped and aborts, which libFuzzer records as a
// crash (with the input saved as crash-<sha1>). Crashes inside a library (HDF5, zlib, stb,
// LibTorch's zip and pickle readers) are reported by ASan/UBSan directly, and are findings too.
#pragma once
#include <H5Cpp.h>
#include <cxxabi.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>

#include "net2net/core/error.h"

namespace net2net::fuzz {

// The demangled type of the exception being handled (inside a catch block).
inline std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  if (!t) return "?";
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name(abi::__cxa_demangle(t->name(), nullptr, nullptr, &status), &std::free);
  return status == 0 && name ? name.get() : t->name();
}

[[noreturn]] inline void finding(const std::string& where, const std::string& what) {
  std::fprintf(stderr, "\n==net2net-fuzz== FINDING in %s: %s\n", where.c_str(), what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Runs f(); returns true when it completed, false when it refused with a net2net::Error.
// Any other exception is a finding (see above).
template <class F>
bool run_guarded(const char* where, F&& f) {
  try {
    f();
    return true;
  } catch (const net2net::Error&) {
    return false;  // a documented refusal: the tool exits 2/3 with a message
  } catch (const H5::Exception& e) {  // not a std::exception
    finding(where, "H5::Exception escaped: " + e.getFuncName() + ": " + e.getDetailMsg());
  } catch (const std::exception& e) {
    finding(where, current_exception_type() + " escaped: " + e.what());
  } catch (...) {
    finding(where, current_exception_type() + " escaped (not a std::exception)");
  }
}

// f() must refuse with a net2net::Error (e.g. a row index past the end): completing is a finding.
template <class F>
void expect_refusal(const char* where, F&& f) {
  if (run_guarded(where, std::forward<F>(f))) finding(where, "accepted a request that must be refused");
}

// A per-process scratch folder: $TMPDIR, else /dev/shm, else /tmp; removed at a normal exit.
class Scratch {
 public:
  explicit Scratch(const std::string& target) {
    namespace fs = std::filesystem;
    const char* tmp = std::getenv("TMPDIR");
    std::string base = tmp && *tmp ? tmp : (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    dir_ = base + "/net2net-" + target + "-" + std::to_string(::getpid());
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::create_directories(dir_, ec);
    if (ec) {
      std::fprintf(stderr, "cannot create the scratch folder '%s': %s\n", dir_.c_str(), ec.message().c_str());
      std::exit(1);
    }
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// Writes the bytes to `path` as a new file (unlinked first: a new inode each run, so that a
// library that still holds the previous one open, or caches it by inode as HDF5 does, never
// sees old contents under the new bytes).
inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  ::unlink(path.c_str());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::fprintf(stderr, "cannot write the scratch file '%s'\n", path.c_str());
    std::exit(1);
  }
}

inline void write_file(const std::string& path, const std::string& bytes) {
  write_file(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// a * b when it fits in int64 and is at most `limit`, else -1 (sizes read from a file).
inline int64_t bounded_product(int64_t a, int64_t b, int64_t limit) {
  int64_t p = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &p) || p > limit) return -1;
  return p;
}

}  // namespace net2net::fuzz
