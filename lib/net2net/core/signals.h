// SIGINT, SIGTERM and SIGUSR1 (what SLURM sends before a time limit) ask long jobs to stop at
// the next safe point: they poll stop_requested() between batches, write what they have, and
// exit with code 4 (resumable). A second SIGINT ends the process at once.
#pragma once

namespace net2net {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
};

bool stop_requested();
int stop_signal();          // the signal number received, 0 if none
void reset_stop_request();  // for tests

}  // namespace net2net
