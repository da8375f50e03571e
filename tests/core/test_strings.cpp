// core/strings: "did you mean" suggestions and one-line printable text.
#include <catch2/catch.hpp>

#include "ckptkit/core/strings.hpp"

using namespace ckpt;

TEST_CASE("closest suggests a name within a few edits, else nothing", "[core][strings]") {
  const std::vector<std::string> cmds{"svd-init", "mpo-init", "quantize", "merge", "inspect"};
  CHECK(closest("svd-int", cmds) == "svd-init");   // a deletion
  CHECK(closest("quantise", cmds) == "quantize");  // a substitution
  CHECK(closest("mrege", cmds) == "merge");        // a swap of neighbours is one edit
  CHECK(closest("inspcet", cmds) == "inspect");
  CHECK(closest("frobnicate", cmds).empty());  // nothing near
  CHECK(closest("mrg", cmds).empty());         // 2 edits: too many for a 3-letter word
  CHECK(closest("", cmds).empty());
  const std::vector<std::string> flags{"--rank", "--ranks-file", "--alpha"};
  CHECK(closest("--rnak", flags) == "--rank");
  CHECK(closest(std::string(300, 'x'), flags).empty());  // long words are not compared
}

TEST_CASE("printable escapes control bytes and cuts long text", "[core][strings]") {
  CHECK(printable("a\nb") == "a\\x0ab");
  CHECK(printable(std::string(200, 'y'), 10).size() < 20);
}
