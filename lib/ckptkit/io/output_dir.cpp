#include "ckptkit/io/output_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/interrupt.hpp"
#include "ckptkit/io/file_bytes.hpp"
#include "ckptkit/io/paths.hpp"

namespace ckpt {
namespace fs = std::filesystem;

namespace {

/// An output may not be an input, hold one or lie inside one.
void check_not_input(const fs::path& final_abs, const fs::path& shown,
                     const std::vector<fs::path>& inputs) {
  for (const auto& in : inputs) {
    const fs::path a = absolute_clean(in);
    if (a == final_abs || is_within(a, final_abs) || is_within(final_abs, a))
      fail(ErrorKind::Usage,
           shown.string() + ": output would overwrite or sit inside the input " + in.string());
  }
}

}  // namespace

OutputDir::OutputDir(fs::path final_path, bool force, const std::vector<fs::path>& inputs,
                     std::optional<fs::path> report_copy)
    : final_(absolute_clean(final_path)), force_(force), report_copy_(std::move(report_copy)) {
  std::error_code ec;
  check_not_input(final_, final_path, inputs);
  if (is_within(absolute_clean(fs::current_path(ec)), final_))
    fail(ErrorKind::Usage,
         final_path.string() + ": output would replace the current directory or one above it");
  if (fs::exists(fs::symlink_status(final_, ec))) {
    if (!force)
      fail(ErrorKind::Usage,
           final_path.string() + ": output already exists (use --force to replace it)");
    if (!replaceable_output(final_))
      fail(ErrorKind::Usage, final_path.string() + ": exists and is not a ckptkit output (no " +
                                 kOutputMarker + "): --force replaces only what ckptkit wrote");
  }
  if (report_copy_) check_report_path(*report_copy_, final_, force, inputs);
  const fs::path parent = final_.parent_path();
  create_parents(parent, final_path);
  remove_stale_temporaries(final_);
  tmp_ = parent / ("." + final_.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp_, ec);
  stop_cleanup_ = std::make_unique<StopCleanup>(tmp_);
  if (!fs::create_directory(tmp_, ec))
    fail(ErrorKind::Io, final_path.string() + ": cannot create output (" + ec.message() + ")");
  write_text_file(tmp_ / kOutputMarker, "{\"tool\": \"ckptkit\"}\n");
}

void OutputDir::write_report_copy(const std::string& text) const {
  if (report_copy_) write_file_atomically(*report_copy_, text);
}

OutputDir::~OutputDir() {
  if (committed_) return;  // stop_cleanup_ is released after the removal below
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  // Folders this run created for the output go too, deepest first, if nothing else landed there.
  for (const auto& dir : created_parents_)
    fs::remove(dir, ec);
}

void OutputDir::create_parents(const fs::path& parent, const fs::path& shown) {
  std::error_code ec;
  if (fs::is_directory(parent, ec)) return;
  std::vector<fs::path> missing;  // deepest first
  for (fs::path p = parent; !p.empty() && !fs::exists(fs::symlink_status(p, ec));
       p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.root_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (!fs::create_directory(*it, ec) && !fs::is_directory(*it))
      fail(ErrorKind::Io, shown.string() + ": cannot create the folder " + it->string() + " (" +
                              (ec ? ec.message() : "a file of that name exists") + ")");
    created_parents_.insert(created_parents_.begin(), *it);
  }
  if (!fs::is_directory(parent, ec))
    fail(ErrorKind::Io, shown.string() + ": " + parent.string() + " is not a folder");
}

void OutputDir::commit() {
  check_inputs_intact();  // an input truncated under us: its zero-filled pages must not land
  stop_cleanup_->commit([this] { move_into_place(); });
}

void OutputDir::move_into_place() {
  std::error_code ec;
  fs::path old;
  if (fs::exists(final_, ec)) {
    if (!force_)
      fail(ErrorKind::Usage, final_.string() + ": output appeared while writing; not replacing it");
    old = final_.parent_path() /
          ("." + final_.filename().string() + ".old-" + std::to_string(::getpid()));
    fs::rename(final_, old, ec);
    if (ec)
      fail(ErrorKind::Io,
           final_.string() + ": cannot move the old output aside (" + ec.message() + ")");
  }
  fs::rename(tmp_, final_, ec);
  if (ec)
    fail(ErrorKind::Io,
         final_.string() + ": cannot move the output into place (" + ec.message() + ")");
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
}

fs::path OutputDir::part(const std::string& name) const {
  const fs::path dir = tmp_ / name;
  fs::create_directories(dir);
  return dir;
}

OutputFile::OutputFile(fs::path final_path, bool force, const std::vector<fs::path>& inputs,
                       std::optional<fs::path> report_copy,
                       const std::function<bool(const fs::path&)>& replaceable,
                       const std::string& replaceable_what)
    : final_(absolute_clean(final_path)), report_copy_(std::move(report_copy)) {
  std::error_code ec;
  check_not_input(final_, final_path, inputs);
  if (final_path.filename().empty() || fs::is_directory(final_, ec))
    fail(ErrorKind::Usage, final_path.string() + ": is a folder; give a file name");
  if (fs::exists(fs::symlink_status(final_, ec))) {
    if (!force)
      fail(ErrorKind::Usage,
           final_path.string() + ": output already exists (use --force to replace it)");
    if (!fs::is_regular_file(fs::symlink_status(final_, ec)) || !replaceable(final_))
      fail(ErrorKind::Usage, final_path.string() + ": exists and is not " + replaceable_what +
                                 ": --force replaces only that");
  }
  if (report_copy_) check_report_path(*report_copy_, final_, force, inputs);
  const fs::path parent = final_.parent_path();
  if (!fs::is_directory(parent, ec))
    fail(ErrorKind::Usage,
         final_path.string() + ": the folder " + parent.string() + " does not exist");
  remove_stale_temporaries(final_);
  tmp_ = parent / ("." + final_.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp_, ec);
  stop_cleanup_ = std::make_unique<StopCleanup>(tmp_);
}

OutputFile::~OutputFile() {
  if (committed_) return;
  std::error_code ec;
  fs::remove(tmp_, ec);
}

void OutputFile::write(std::span<const std::byte> bytes) const {
  const int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    fail(ErrorKind::Io, final_.string() + ": cannot create (" + std::strerror(errno) + ")");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      fail(ErrorKind::Io, final_.string() + ": write failed (" + std::strerror(e) + ")");
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int e = errno;
  if (::close(fd) != 0 || !synced)
    fail(ErrorKind::Io, final_.string() + ": write failed (" + std::strerror(e) + ")");
}

void OutputFile::commit() {
  check_inputs_intact();
  stop_cleanup_->commit([this] {
    std::error_code ec;
    fs::rename(tmp_, final_, ec);  // replaces an existing file atomically
    if (ec)
      fail(ErrorKind::Io,
           final_.string() + ": cannot move the output into place (" + ec.message() + ")");
    committed_ = true;
  });
}

void OutputFile::write_report_copy(const std::string& text) const {
  if (report_copy_) write_file_atomically(*report_copy_, text);
}

bool is_model_companion(const std::string& name) {
  static const char* const exact[] = {"config.json",
                                      "generation_config.json",
                                      "tokenizer.json",
                                      "tokenizer_config.json",
                                      "tokenizer.model",
                                      "special_tokens_map.json",
                                      "added_tokens.json",
                                      "vocab.json",
                                      "vocab.txt",
                                      "merges.txt",
                                      "spiece.model",
                                      "chat_template.json",
                                      "chat_template.jinja",
                                      "preprocessor_config.json",
                                      "processor_config.json"};
  for (const char* e : exact)
    if (name == e) return true;
  // The terms the weights come under travel with anything derived from them.
  for (const char* prefix : {"LICENSE", "LICENCE", "NOTICE", "USE_POLICY", "PROVENANCE"})
    if (name.starts_with(prefix)) return true;
  return name.ends_with(".tiktoken") ||
         (name.starts_with("sentencepiece") && name.ends_with(".model"));
}

void copy_files(const std::vector<fs::path>& files, const fs::path& dir,
                const std::vector<std::string>& skip) {
  for (const auto& f : files) {
    const std::string name = f.filename().string();
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    // Only what loads or licenses the model: a model card, training scripts or a stale table
    // describe the input, not this output (ckptkit's own report.json and part manifests too).
    if (!is_model_companion(name)) continue;
    std::error_code ec;
    fs::copy_file(f, dir / name, fs::copy_options::overwrite_existing, ec);
    if (ec) fail(ErrorKind::Io, f.string() + ": cannot copy (" + ec.message() + ")");
    // Outputs belong to the user: a read-only input file must not give a read-only output.
    fs::permissions(dir / name, fs::perms::owner_read | fs::perms::owner_write,
                    fs::perm_options::add, ec);
  }
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail(ErrorKind::Io, path.string() + ": cannot create (" + std::strerror(errno) + ")");
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const int e = errno;
  if (std::fclose(f) != 0 || !ok)
    fail(ErrorKind::Io, path.string() + ": write failed (" + std::strerror(ok ? errno : e) + ")");
}

}  // namespace ckpt
