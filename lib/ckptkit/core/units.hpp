// Byte sizes as users write them: "5GB" (10^9, as Hugging Face counts shards), "4GiB", "512M".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ckpt {

/// Parses "123", "10KB", "5GB", "4GiB", "1G" (G/M/K alone are binary, as --memory-budget 4G).
/// Throws Error(Usage) naming `what` on a malformed value.
std::uint64_t parse_size(std::string_view text, std::string_view what);
/// "1.23 GB" style for reports.
std::string format_bytes(std::uint64_t bytes);

}  // namespace ckpt
