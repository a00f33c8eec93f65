#include "net2net/core/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace net2net {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = std::lround(s);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

Progress::Progress(std::string what, int64_t total, std::string unit, int64_t start)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total), start_(start), last_done_(start),
      t0_(std::chrono::steady_clock::now()), last_print_(t0_), interval_(isatty(2) ? 1.0 : 10.0) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

double Progress::rate() const {
  double t = elapsed_seconds();
  return t > 0 ? (last_done_ - start_) / t : 0.0;
}

void Progress::update(int64_t done) {
  last_done_ = done;
  auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_print_).count() >= interval_) {
    last_print_ = now;
    print(done, false);
  }
}

void Progress::finish() { print(last_done_, true); }

void Progress::print(int64_t done, bool final) {
  double r = rate();
  double pct = total_ > 0 ? 100.0 * done / total_ : 100.0;
  if (final) {
    spdlog::info("{}: {}/{} {} in {} ({:.1f} {}/s)", what_, done, total_, unit_, format_duration(elapsed_seconds()), r, unit_);
  } else {
    double eta = r > 0 ? (total_ - done) / r : NAN;
    spdlog::info("{}: {}/{} {} ({:.1f}%), {:.1f} {}/s, ETA {}", what_, done, total_, unit_, pct, r, unit_, format_duration(eta));
  }
}

}  // namespace net2net
