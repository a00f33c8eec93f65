// Human logs go to stderr (stdout is for machine-readable output); one logger for all tools.
#pragma once
#include <string>

namespace net2net {

// Levels: trace, debug, info, warn, error, off. Throws UsageError on anything else.
void setup_logging(const std::string& level);
bool is_valid_log_level(const std::string& level);

}  // namespace net2net
