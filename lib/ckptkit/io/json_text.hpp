// JSON read from files we did not write (config.json, adapter_config.json, part manifests and
// reports, quant_state metadata), bounded before a DOM is built: nlohmann parses iteratively, but
// copying and dumping a value recurse, so a value nested 10⁵ deep would overflow the stack later.
// Headers and indexes, which can be large, have their own linear SAX readers (io/safetensors).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ckpt {

/// Deepest nesting of arrays and objects accepted in such a file; real configs stay below 8.
inline constexpr std::size_t kMaxJsonDepth = 64;
/// Largest such text accepted (a real adapter_config.json or config.json is a few KiB; a part's
/// report.json of a 10⁵-tensor model a few tens of MiB).
inline constexpr std::size_t kMaxJsonBytes = std::size_t{256} << 20;

/// Error(Format) "<where>: JSON nested deeper than 64 levels" when `text` nests deeper than
/// kMaxJsonDepth (one linear pass that skips strings), or is larger than kMaxJsonBytes.
void check_json_bounds(std::string_view text, const std::string& where);

/// `text` parsed after check_json_bounds; Error(Format) "<where>: not valid JSON (...)" otherwise.
nlohmann::json parse_json_text(std::string_view text, const std::string& where);
nlohmann::ordered_json parse_ordered_json_text(std::string_view text, const std::string& where);

/// The file read (as an input: guarded, size-checked) and parsed like parse_json_text.
nlohmann::json read_json_file(const std::filesystem::path& path);
nlohmann::ordered_json read_ordered_json_file(const std::filesystem::path& path);

}  // namespace ckpt
