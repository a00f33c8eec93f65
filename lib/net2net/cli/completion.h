// Bash completion of a tool, generated from its CLI11 option table (flags, subcommands with their
// flags) and the config key tables (KEY= after --set), so nothing is typed twice. Printed by the
// hidden flag --bash-completion; CMake writes it at build time and installs it.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace net2net::cli {

std::string bash_completion(CLI::App& app, const std::string& tool);

}  // namespace net2net::cli
