// Subcommands of the design that this build does not ship yet: they are listed in --help so the
// interface is visible, and running one says so and exits 2.
#include <cstdio>

#include "commands.hpp"

namespace ckpt::cli {

void add_planned(CLI::App& app, Run& run, const std::string& name, const std::string& what) {
  auto* cmd = app.add_subcommand(name, what + " [not in this build]");
  cmd->allow_extras();
  cmd->callback([&run, name] {
    run = [name] {
      std::fprintf(stderr,
                   "ckptkit %s: not available in this build; it ships with a later version "
                   "(see README.md, 'Subcommands')\n",
                   name.c_str());
      return 2;
    };
  });
}

}  // namespace ckpt::cli
