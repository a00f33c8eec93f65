// net2net-translate: all logic lives in the net2net library (lib/net2net/commands/translate.cpp).
#include "net2net/cli/options.h"

int main(int argc, char** argv) { return net2net::cli::run_tool("net2net-translate", argc, argv); }
