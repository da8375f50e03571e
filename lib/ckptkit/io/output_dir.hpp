// An output directory that appears atomically: everything is written into a temporary sibling
// which is renamed into place by commit(); if commit() is never reached (error, signal), the
// destructor removes the temporary, so no half-written output is ever left behind.
#pragma once

#include <filesystem>
#include <vector>

namespace ckpt {

class OutputDir {
 public:
  /// Refuses (Error(Usage)) an existing `final_path` unless `force`, and an output that is one of
  /// `inputs` or lies inside one; creates the temporary sibling.
  OutputDir(std::filesystem::path final_path, bool force,
            const std::vector<std::filesystem::path>& inputs = {});
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  /// Where to write now (the temporary directory).
  const std::filesystem::path& path() const { return tmp_; }
  const std::filesystem::path& final_path() const { return final_; }
  /// Moves the finished directory into place (replacing an existing one when forced).
  void commit();

 private:
  std::filesystem::path final_, tmp_;
  bool force_;
  bool committed_ = false;
};

/// Copies `files` into `dir` (config.json, tokenizer files, ...), skipping names in `skip` and
/// ckptkit's own report.json / ckptkit-part.json (they describe the run that made the input).
void copy_files(const std::vector<std::filesystem::path>& files, const std::filesystem::path& dir,
                const std::vector<std::string>& skip = {});

/// Writes a text file (e.g. JSON) to `path`, throwing Error(Io) on failure.
void write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace ckpt
