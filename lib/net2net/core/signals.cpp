#include "net2net/core/signals.h"

#include <csignal>
#include <cstdlib>
#include <unistd.h>

namespace net2net {

namespace {
volatile std::sig_atomic_t g_signal = 0;
struct sigaction g_old[3];
const int kSignals[3] = {SIGINT, SIGTERM, SIGUSR1};

void handler(int sig) {
  if (g_signal == SIGINT && sig == SIGINT) _exit(130);  // second Ctrl-C: stop now
  g_signal = sig;
}
}  // namespace

StopSignals::StopSignals() {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &g_old[i]);
}

StopSignals::~StopSignals() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_old[i], nullptr);
}

bool stop_requested() { return g_signal != 0; }
int stop_signal() { return g_signal; }
void reset_stop_request() { g_signal = 0; }

}  // namespace net2net
