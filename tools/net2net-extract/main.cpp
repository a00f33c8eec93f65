// net2net-extract: all logic lives in the net2net library (lib/net2net/commands/extract.cpp).
#include "net2net/cli/options.h"

int main(int argc, char** argv) { return net2net::cli::run_tool("net2net-extract", argc, argv); }
