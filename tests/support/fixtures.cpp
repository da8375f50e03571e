#include "support/fixtures.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include "ckptkit/core/rng.hpp"

namespace ckpt::test {
namespace fs = std::filesystem;

TempDir::TempDir(const std::string& tag) {
  static int counter = 0;
  path_ = fs::temp_directory_path() /
          (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

fs::path data_dir() {
  if (const char* d = std::getenv("CKPTKIT_DATA")) return d;
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "data";
}

fs::path shared_data_dir() {
  const fs::path p = data_dir().parent_path().parent_path() / "shared" / "data";
  std::error_code ec;
  return fs::is_directory(p, ec) ? p : fs::path();
}

void write_bytes(const fs::path& p, const std::vector<std::byte>& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::byte> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  for (std::size_t i = 0; i < c.size(); ++i)
    out[i] = static_cast<std::byte>(c[i]);
  return out;
}

std::vector<std::byte> raw_safetensors(const std::string& header_json, std::size_t data_bytes) {
  std::vector<std::byte> out(8 + header_json.size() + data_bytes, std::byte{0});
  const std::uint64_t n = header_json.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  for (std::size_t i = 0; i < header_json.size(); ++i)
    out[8 + i] = static_cast<std::byte>(header_json[i]);
  for (std::size_t i = 0; i < data_bytes; ++i)
    out[8 + header_json.size() + i] = static_cast<std::byte>(i * 7 + 1);
  return out;
}

std::vector<float> gaussian(std::size_t n, std::uint64_t seed, float scale) {
  Rng rng(seed, "test");
  std::vector<float> v(n);
  for (auto& x : v)
    x = static_cast<float>(rng.normal()) * scale;
  return v;
}

}  // namespace ckpt::test
