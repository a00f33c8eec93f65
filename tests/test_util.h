// Helpers shared by the test binaries: temporary folders, running commands and Python.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace net2net::test {

class TempDir {
 public:
  explicit TempDir(const std::string& name) {
    path_ = std::filesystem::temp_directory_path() / ("net2net_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Exit status of a shell command run in the source folder.
inline int shell(const std::string& command) {
  std::string cmd = "cd '" + std::string(NET2NET_SOURCE_DIR) + "' && " + command;
  int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline std::string shell_output(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// Debian's interpreter: the one that sees python3-torch, -h5py, -scipy.
inline int run_python(const std::string& script_and_args) { return shell("/usr/bin/python3 " + script_and_args); }

inline bool has_python_module(const std::string& module) {
  return shell("/usr/bin/python3 -c 'import " + module + "' > /dev/null 2>&1") == 0;
}

}  // namespace net2net::test

// Skips the calling test when /usr/bin/python3 lacks a module (scripts/run_tests.sh installs them).
#define NET2NET_REQUIRE_PYTHON(module)                                                     \
  if (!::net2net::test::has_python_module(module))                                          \
  GTEST_SKIP() << "python3 module " << (module) << " missing (scripts/run_tests.sh installs it)"
