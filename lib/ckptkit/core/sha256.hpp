// SHA-256, for the input fingerprints in reports.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace ckpt {

/// Lower-case hex SHA-256 of `data`.
std::string sha256_hex(std::span<const std::byte> data);

}  // namespace ckpt
