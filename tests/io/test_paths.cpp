// The path policy (io/paths.hpp): names from files stay inside their directory, --force replaces
// only ckptkit outputs, --report never lands on an input.
#include <unistd.h>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "ckptkit/core/error.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/paths.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
namespace fs = std::filesystem;

namespace {

bool refused(const std::string& name, std::size_t depth, bool allow_dot = false) {
  try {
    check_plain_relative(name, depth, "m.json", "field", allow_dot);
    return false;
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK(std::string(e.what()).find("m.json") != std::string::npos);
    return true;
  }
}

}  // namespace

TEST_CASE("names from files: plain relative names only") {
  CHECK_FALSE(refused("model-00001-of-00002.safetensors", 1));
  CHECK_FALSE(refused("residual", 16));
  CHECK_FALSE(refused("a/b", 2));
  CHECK_FALSE(refused(".", 16, true));
  for (const char* bad :
       {"", "/etc/passwd", "..", "../x", "a/../b", "a//b", "./a", "a/", "x\ny", "a\\b"})
    CHECK(refused(bad, 16));
  CHECK(refused("a/b", 1));  // a file name was expected
  CHECK(refused(".", 16));   // "." only where the directory itself is meant
}

TEST_CASE("force replaces only what ckptkit wrote, the report copy never an input") {
  test::TempDir tmp;
  const fs::path mine = tmp.path() / "mine";
  fs::create_directories(mine);
  std::ofstream(mine / "notes.txt") << "mine";
  CHECK_FALSE(replaceable_output(mine));
  CHECK_THROWS_AS(OutputDir(mine, true), Error);
  CHECK(fs::exists(mine / "notes.txt"));
  {
    OutputDir out(tmp.path() / "out", false);
    CHECK(fs::exists(out.path() / kOutputMarker));
    out.commit();
  }
  CHECK(replaceable_output(tmp.path() / "out"));
  CHECK_NOTHROW(OutputDir(tmp.path() / "out", true));
  fs::create_directories(tmp.path() / "empty");
  CHECK(replaceable_output(tmp.path() / "empty"));

  const fs::path input = tmp.path() / "in";
  fs::create_directories(input);
  std::ofstream(input / "model.safetensors") << "x";
  CHECK_THROWS_AS(check_report_path(input / "model.safetensors", tmp.path() / "o", true, {input}),
                  Error);
  CHECK_THROWS_AS(check_report_path(tmp.path() / "o" / "r.json", tmp.path() / "o", true, {input}),
                  Error);
  CHECK_THROWS_AS(check_report_path(tmp.path() / "no" / "r.json", tmp.path() / "o", true, {input}),
                  Error);
  CHECK_NOTHROW(check_report_path(tmp.path() / "r.json", tmp.path() / "o", false, {input}));
  write_file_atomically(tmp.path() / "r.json", "{}\n");
  CHECK_THROWS_AS(check_report_path(tmp.path() / "r.json", tmp.path() / "o", false, {input}),
                  Error);
  CHECK_NOTHROW(check_report_path(tmp.path() / "r.json", tmp.path() / "o", true, {input}));
}

TEST_CASE("temporaries of dead runs are removed, those of live ones kept") {
  test::TempDir tmp;
  const fs::path dead = tmp.path() / ".out.tmp-999999999";
  const fs::path live = tmp.path() / (".out.tmp-" + std::to_string(::getppid()));
  fs::create_directories(dead);
  fs::create_directories(live);
  remove_stale_temporaries(tmp.path() / "out");
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(live));
}
