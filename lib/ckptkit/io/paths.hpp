// The path policy, in one place (docs/reliability.md, "What is written where"): names read from
// files are joined to a directory only when they cannot leave it, and outputs (the output
// directory, the --report copy) never land on an input or on something ckptkit did not write.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace ckpt {

/// Checks a name read from a file (part manifest, index, config) before it is joined to a
/// directory: a relative path of at most `max_components` plain components (1: a file name), none
/// empty, "." or "..", no absolute root, backslash, NUL or control byte. "." alone is allowed when
/// `allow_dot` (the directory itself). Error(Format) "<file>: <field> '<name>' ..." otherwise.
void check_plain_relative(const std::string& name, std::size_t max_components,
                          const std::string& file, const std::string& field,
                          bool allow_dot = false);

/// `p` made absolute with symlinks and ".." resolved as far as the path exists.
std::filesystem::path absolute_clean(const std::filesystem::path& p);

/// True when `child` is `parent` or lies below it (both absolute_clean).
bool is_within(const std::filesystem::path& child, const std::filesystem::path& parent);

/// The marker every ckptkit output directory holds; `--force` replaces only directories that have
/// it (or a report.json ckptkit wrote, from before the marker existed) and empty ones.
inline constexpr const char* kOutputMarker = ".ckptkit-output";

/// Whether `dir` is a directory ckptkit wrote (see kOutputMarker), or an empty one.
bool replaceable_output(const std::filesystem::path& dir);

/// Checks the --report copy before any work: not an input or inside one, not inside the output,
/// not existing unless `force` (and then a regular file), its parent an existing directory.
/// Error(Usage) naming the path.
void check_report_path(const std::filesystem::path& report, const std::filesystem::path& output,
                       bool force, const std::vector<std::filesystem::path>& inputs);

/// Writes `text` to `path` atomically: a temporary sibling, fsync'd, renamed into place.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

/// Removes `.<name>.tmp-PID` / `.<name>.old-PID` siblings of `final_path` left by ckptkit runs
/// whose process is gone (killed before they could clean up).
void remove_stale_temporaries(const std::filesystem::path& final_path);

}  // namespace ckpt
