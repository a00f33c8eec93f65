#include "net2net/core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "net2net/core/error.h"

namespace net2net {

bool is_valid_log_level(const std::string& level) {
  return level == "trace" || level == "debug" || level == "info" || level == "warn" ||
         level == "error" || level == "off";
}

void setup_logging(const std::string& level) {
  if (!is_valid_log_level(level)) throw UsageError("unknown log level '" + level + "'");
  auto logger = spdlog::get("net2net");
  if (!logger) {
    logger = spdlog::stderr_color_mt("net2net");
    spdlog::set_default_logger(logger);
  }
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace net2net
