// Helpers shared by the test binaries: temporary folders, running commands and Python.
#pragma once
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <spawn.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

extern char** environ;

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

// Starts a program (argv[0] a path) with stdout and stderr to `log` and extra environment
// variables ("NAME=value"); returns its pid.
inline pid_t spawn(const std::vector<std::string>& args, const std::string& log,
                   const std::vector<std::string>& env_extra = {}) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.push_back(*e);
  for (const auto& e : env_extra) env_store.push_back(e);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Exit code of a child; 128 + signal when a signal ended it.
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A whole file as text ("" when it cannot be read).
inline std::string slurp(const std::string& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}


// Flips one bit in the middle of the largest tensor record of a checkpoint (a LibTorch zip archive):
// damage that the zip's own CRCs would catch but LibTorch's reader does not check.
inline void flip_a_tensor_bit(const std::string& checkpoint) {
  size_t offset = 0, size = 0;
  {
    caffe2::serialize::PyTorchStreamReader reader(checkpoint);
    for (const auto& name : reader.getAllRecords()) {
      if (name.rfind("data/", 0) != 0 && name.find("/data/") == std::string::npos) continue;
      auto [data, n] = reader.getRecord(name);
      if (n > size) size = n, offset = reader.getRecordOffset(name);
    }
  }
  ASSERT_GT(size, 0u) << checkpoint << " has no tensor records";
  std::fstream f(checkpoint, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset + size / 2));
  char c = 0;
  f.read(&c, 1);
  c ^= 0x10;
  f.seekp(static_cast<std::streamoff>(offset + size / 2));
  f.write(&c, 1);
}

}  // namespace net2net::test

// Skips the calling test when /usr/bin/python3 lacks a module (scripts/run_tests.sh installs them).
#define NET2NET_REQUIRE_PYTHON(module)                                                     \
  if (!::net2net::test::has_python_module(module))                                          \
  GTEST_SKIP() << "python3 module " << (module) << " missing (scripts/run_tests.sh installs it)"
