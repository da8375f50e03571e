// An output directory that appears atomically: everything is written into a temporary sibling
// which is renamed into place by commit(); if commit() is never reached (error, signal), the
// destructor removes the temporary, so no half-written output is ever left behind.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ckpt {

class StopCleanup;

class OutputDir {
 public:
  /// Refuses (Error(Usage)) an output that is one of `inputs`, lies inside one or holds one, the
  /// current directory or one above it, and an existing `final_path` unless `force` — and then
  /// only one ckptkit wrote (io/paths.hpp, kOutputMarker) or an empty directory. Checks the
  /// `report_copy` path (--report) the same way, removes temporaries of dead earlier runs, and
  /// creates the temporary sibling holding the marker.
  OutputDir(std::filesystem::path final_path, bool force,
            const std::vector<std::filesystem::path>& inputs = {},
            std::optional<std::filesystem::path> report_copy = std::nullopt);
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  /// Where to write now (the temporary directory).
  const std::filesystem::path& path() const { return tmp_; }
  /// The part `name` of the output (adapter/, residual/, quantized/, model/: io/output_layout),
  /// created: where a command writes that part now.
  std::filesystem::path part(const std::string& name) const;
  const std::filesystem::path& final_path() const { return final_; }
  /// Moves the finished directory into place (replacing an existing one when forced).
  void commit();
  /// Writes the --report copy given at construction (atomically), if there is one.
  void write_report_copy(const std::string& text) const;

 private:
  void move_into_place();
  /// Creates the missing folders above the output (`mkdir -p`), remembering them so a failed run
  /// removes them again.
  void create_parents(const std::filesystem::path& parent, const std::filesystem::path& shown);

  std::filesystem::path final_, tmp_;
  std::vector<std::filesystem::path> created_parents_;  // deepest first
  std::unique_ptr<StopCleanup> stop_cleanup_;  // the watchdog removes tmp_ on a forced stop
  bool force_;
  std::optional<std::filesystem::path> report_copy_;
  bool committed_ = false;
};

/// An output that is one file (export-gguf's .gguf): written to a temporary sibling, renamed into
/// place by commit(), removed if commit() is never reached. The same checks as OutputDir, except
/// that the folder must exist and `--force` replaces only a file `replaceable` accepts (a file
/// carries no marker: export-gguf accepts a GGUF file).
class OutputFile {
 public:
  OutputFile(std::filesystem::path final_path, bool force,
             const std::vector<std::filesystem::path>& inputs,
             std::optional<std::filesystem::path> report_copy,
             const std::function<bool(const std::filesystem::path&)>& replaceable,
             const std::string& replaceable_what);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  /// Writes the whole file (to the temporary, fsync'd).
  void write(std::span<const std::byte> bytes) const;
  const std::filesystem::path& final_path() const { return final_; }
  /// Moves the file into place (replacing an existing one when forced).
  void commit();
  void write_report_copy(const std::string& text) const;

 private:
  std::filesystem::path final_, tmp_;
  std::unique_ptr<StopCleanup> stop_cleanup_;
  std::optional<std::filesystem::path> report_copy_;
  bool committed_ = false;
};

/// Whether a file beside a checkpoint goes with the weights into a full-checkpoint output: what
/// transformers loads with them (config, generation config, tokenizer and processor files, chat
/// template) and their terms (LICENSE*, NOTICE*, USE_POLICY*, PROVENANCE*). Not a model card
/// (README.md), scripts, tables or ckptkit's own report.json: they describe the input.
bool is_model_companion(const std::string& name);

/// Copies the model companions among `files` (is_model_companion) into `dir`, skipping names in
/// `skip`.
void copy_files(const std::vector<std::filesystem::path>& files, const std::filesystem::path& dir,
                const std::vector<std::string>& skip = {});

/// Writes a text file (e.g. JSON) to `path`, throwing Error(Io) on failure.
void write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace ckpt
