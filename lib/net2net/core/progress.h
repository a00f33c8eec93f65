// Progress lines with rate and ETA on stderr (through the logger): at most once a second on a
// terminal, every 10 seconds otherwise (SLURM logs), and always at the end.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace net2net {

class Progress {
 public:
  Progress(std::string what, int64_t total, std::string unit, int64_t start = 0);
  void update(int64_t done);
  void finish();
  double elapsed_seconds() const;
  double rate() const;  // units per second since the start

 private:
  void print(int64_t done, bool final);
  std::string what_, unit_;
  int64_t total_, start_, last_done_ = 0;
  std::chrono::steady_clock::time_point t0_, last_print_;
  double interval_;
};

std::string format_duration(double seconds);

}  // namespace net2net
