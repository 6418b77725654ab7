// The commands that talk to fetchqd over its control socket (and list/show/events --db).
#include "cli/commands.h"

namespace fetchq::cli {

void add_client_commands(CLI::App&, std::function<int()>*) {}

}  // namespace fetchq::cli
