// Every subcommand's CommandSpec: what the engine (stitch) needs to know of each.
#pragma once

#include <vector>

#include "ckptkit/engine/command_spec.hpp"

namespace ckpt {

/// The specs of the commands that run with --shard K/N (the others need none).
std::vector<CommandSpec> command_specs();

}  // namespace ckpt
