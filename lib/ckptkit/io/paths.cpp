#include "ckptkit/io/paths.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/interrupt.hpp"
#include "ckptkit/core/strings.hpp"

namespace ckpt {
namespace fs = std::filesystem;

void check_plain_relative(const std::string& name, std::size_t max_components,
                          const std::string& file, const std::string& field, bool allow_dot) {
  auto bad = [&](const char* why) {
    fail(ErrorKind::Format, file + ": " + field + " '" + printable(name) + "' is not a plain " +
                                (max_components == 1 ? "file name" : "relative name") + " (" + why +
                                ")");
  };
  if (allow_dot && name == ".") return;
  if (name.empty()) bad("empty");
  if (name.front() == '/') bad("absolute");
  std::size_t components = 0, start = 0;
  while (start <= name.size()) {
    auto slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    const std::string c = name.substr(start, slash - start);
    if (c.empty() || c == "." || c == "..") bad("empty, '.' or '..' component");
    if (++components > max_components) bad(max_components == 1 ? "a directory part" : "too deep");
    start = slash + 1;
  }
  for (const char ch : name) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f || ch == '\\') bad("control byte or backslash");
  }
}

fs::path absolute_clean(const fs::path& p) {
  std::error_code ec;
  fs::path w = fs::weakly_canonical(fs::absolute(p, ec), ec);
  if (ec) w = fs::absolute(p).lexically_normal();
  // "out/" names the folder "out": drop the empty last component a trailing slash leaves.
  while (!w.has_filename() && w.has_relative_path())
    w = w.parent_path();
  return w;
}

bool is_within(const fs::path& child, const fs::path& parent) {
  auto c = child.begin();
  for (auto p = parent.begin(); p != parent.end(); ++p, ++c) {
    if (p->empty()) continue;
    if (c == child.end() || *c != *p) return false;
  }
  return true;
}

bool replaceable_output(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || fs::is_symlink(dir, ec)) return false;
  if (fs::is_empty(dir, ec)) return !ec;
  if (fs::is_regular_file(dir / kOutputMarker, ec)) return true;
  // Outputs written before the marker: a report.json with ckptkit's envelope.
  std::ifstream f(dir / "report.json");
  std::string head(4096, '\0');
  f.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(f.gcount()));
  return head.find("\"tool\": \"ckptkit\"") != std::string::npos;
}

void check_report_path(const fs::path& report, const fs::path& output, bool force,
                       const std::vector<fs::path>& inputs) {
  const fs::path r = absolute_clean(report);
  const std::string shown = report.string();
  for (const auto& in : inputs)
    if (is_within(r, absolute_clean(in)))
      fail(ErrorKind::Usage,
           "--report " + shown + ": would overwrite or sit inside the input " + in.string());
  if (is_within(r, absolute_clean(output)))
    fail(ErrorKind::Usage, "--report " + shown + ": inside the output, which holds report.json");
  std::error_code ec;
  const auto st = fs::symlink_status(r, ec);
  if (fs::exists(st)) {
    if (!force)
      fail(ErrorKind::Usage, "--report " + shown + ": already exists (use --force to replace it)");
    if (!fs::is_regular_file(st))
      fail(ErrorKind::Usage, "--report " + shown + ": exists and is not a regular file");
  }
  if (!fs::is_directory(r.parent_path(), ec))
    fail(ErrorKind::Usage, "--report " + shown + ": parent directory " + r.parent_path().string() +
                               " does not exist");
}

void write_file_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp =
      path.parent_path() / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()));
  StopCleanup stop_cleanup(tmp);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(ErrorKind::Io, path.string() + ": cannot create (" + std::strerror(errno) + ")");
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail(ErrorKind::Io, path.string() + ": write failed (" + std::strerror(e) + ")");
    }
    done += static_cast<std::size_t>(n);
  }
  stop_cleanup.commit([&] {
    if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
      const int e = errno;
      ::unlink(tmp.c_str());
      fail(ErrorKind::Io, path.string() + ": cannot write (" + std::strerror(e) + ")");
    }
  });
}

void remove_stale_temporaries(const fs::path& final_path) {
  const fs::path parent = final_path.parent_path();
  const std::string name = final_path.filename().string();
  std::error_code ec;
  for (const char* kind : {".tmp-", ".old-"}) {
    const std::string prefix = "." + name + kind;
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string f = it->path().filename().string();
      if (f.size() <= prefix.size() || f.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string pid = f.substr(prefix.size());
      if (pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
      const auto p = static_cast<pid_t>(std::stol(pid));
      if (p == ::getpid() || ::kill(p, 0) == 0 || errno != ESRCH) continue;
      std::error_code rm;
      fs::remove_all(it->path(), rm);
    }
  }
}

}  // namespace ckpt
