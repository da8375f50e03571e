// merge and --to-lora on small synthetic checkpoints: merged weights against an f64 reference
// W + Σ w·s·B·A, every adapter format ckptkit reads (LoRA with patterns / rsLoRA / fan_in_fan_out
// / embeddings, SORSA, MPO), the exact and truncated PiSSA→LoRA conversions, and bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>

#include "ckptkit/adapters/any_adapter.hpp"
#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/adapters/lora_write.hpp"
#include "ckptkit/commands/merge/merge.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "ckptkit/io/writer.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
using ckpt::test::gaussian;
using ckpt::test::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kOut = 24, kIn = 16, kVocab = 10;

/// base: l.q.weight [24, 16] f32, l.c.weight [16, 24] (Conv1D-like), emb.weight [10, 16], l.q.bias.
void write_base(const fs::path& dir, DType dtype = DType::F32, float scale = 1.0f) {
  fs::create_directories(dir);
  std::vector<OwnedTensor> t;
  t.push_back(make_tensor("emb.weight", dtype, {kVocab, kIn}, gaussian(kVocab * kIn, 1, scale)));
  t.push_back(make_tensor("l.q.weight", dtype, {kOut, kIn}, gaussian(kOut * kIn, 2, scale)));
  t.push_back(make_tensor("l.q.bias", dtype, {kOut}, gaussian(kOut, 3, scale)));
  t.push_back(make_tensor("l.c.weight", dtype, {kIn, kOut}, gaussian(kIn * kOut, 4, scale)));
  write_safetensors_file(dir / "model.safetensors", t, {{"format", "pt"}});
}

LoraModule lora_module(const std::string& name, int r, std::int64_t in, std::int64_t out,
                       std::uint64_t seed, bool embedding = false) {
  LoraModule m;
  m.module = name;
  m.rank = r;
  m.in = in;
  m.out = out;
  m.embedding = embedding;
  m.A = gaussian(static_cast<std::size_t>(r * in), seed, 0.3f);
  m.B = gaussian(static_cast<std::size_t>(out * r), seed + 100, 0.3f);
  return m;
}

std::vector<float> weights_of(const fs::path& ckpt, const std::string& name) {
  const Checkpoint c = Checkpoint::open(ckpt);
  return to_f32(c.view(*c.find(name)));
}

/// W + w·s·B·A in f64, in storage layout (transposed: [in, out]).
std::vector<double> reference(const std::vector<float>& W, const LoraModule& m, double s, double w,
                              bool transposed) {
  std::vector<double> out(W.begin(), W.end());
  for (std::int64_t o = 0; o < m.out; ++o)
    for (std::int64_t i = 0; i < m.in; ++i) {
      double d = 0;
      for (int k = 0; k < m.rank; ++k)
        d += static_cast<double>(m.B[o * m.rank + k]) * m.A[k * m.in + i];
      out[transposed ? i * m.out + o : o * m.in + i] += w * s * d;
    }
  return out;
}

double max_rel(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

MergeOptions merge_options(const fs::path& base, std::vector<fs::path> adapters,
                           const fs::path& out) {
  MergeOptions o;
  o.base = base;
  o.adapters = std::move(adapters);
  o.common.output = out;
  o.common.exec.progress = false;
  return o;
}

}  // namespace

TEST_CASE("merge: LoRA with rank_pattern, alpha_pattern, embeddings, weights", "[merge]") {
  TempDir dir("ckpt-merge");
  write_base(dir / "base");
  LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 8;
  cfg.rank_pattern = {{"q", 3}};
  cfg.alpha_pattern = {{"emb", 5}};
  const LoraModule q = lora_module("l.q", 3, kIn, kOut, 7);
  const LoraModule e = lora_module("emb", 4, kVocab, kIn, 8, true);  // (B·A)ᵀ is [10, 16]
  fs::create_directories(dir / "ad");
  write_lora_adapter(dir / "ad", cfg, {q, e});
  MergeOptions o = merge_options(dir / "base", {dir / "ad"}, dir / "out");
  o.weights = {0.5};
  const Json j = run_merge(o);
  CHECK(j["totals"]["merged"] == 2);
  const auto Wq = weights_of(dir / "base", "l.q.weight");
  const double err_q =
      max_rel(weights_of(dir / "out", "l.q.weight"), reference(Wq, q, 8.0 / 3.0, 0.5, false));
  const double err_e =
      max_rel(weights_of(dir / "out", "emb.weight"),
              reference(weights_of(dir / "base", "emb.weight"), e, 5.0 / 4.0, 0.5, true));
  INFO("q rel err " << err_q << ", embedding rel err " << err_e);
  CHECK(err_q < 1e-6);
  CHECK(err_e < 1e-6);
  CHECK(weights_of(dir / "out", "l.c.weight") == weights_of(dir / "base", "l.c.weight"));
  CHECK(weights_of(dir / "out", "l.q.bias") == weights_of(dir / "base", "l.q.bias"));
}

TEST_CASE("merge: fan_in_fan_out + rsLoRA, and two adapters summed", "[merge]") {
  TempDir dir("ckpt-merge");
  write_base(dir / "base");
  LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 6;
  cfg.use_rslora = true;
  cfg.fan_in_fan_out = true;
  const LoraModule c = lora_module("l.c", 4, kIn, kOut, 9);  // stored [in, out]
  fs::create_directories(dir / "a1");
  write_lora_adapter(dir / "a1", cfg, {c});
  const Json j = run_merge(merge_options(dir / "base", {dir / "a1", dir / "a1"}, dir / "out"));
  const auto want = reference(weights_of(dir / "base", "l.c.weight"), c, 6.0 / 2.0, 2.0, true);
  const double err = max_rel(weights_of(dir / "out", "l.c.weight"), want);
  INFO("rel err " << err);
  CHECK(err < 1e-6);
  CHECK(j["tensors"][0]["adapters"].size() == 2);
}

TEST_CASE("merge: SORSA adapter reads as s·B·diag(S)·A", "[merge]") {
  TempDir dir("ckpt-merge");
  write_base(dir / "base");
  LoraConfig cfg;
  cfg.r = 3;
  cfg.lora_alpha = 6;
  SorsaModule s{
      "l.q", 3, kIn, kOut, gaussian(3 * kIn, 11), {2.0f, 1.0f, 0.5f}, gaussian(kOut * 3, 12)};
  fs::create_directories(dir / "so");
  write_sorsa_adapter(dir / "so", cfg, {s});
  const AnyAdapter a = read_any_adapter(dir / "so");
  REQUIRE(a.format == AdapterFormat::Sorsa);
  LoraModule as_lora = lora_module("l.q", 3, kIn, kOut, 0);
  as_lora.A = s.A;
  as_lora.B = s.B;
  for (std::int64_t r = 0; r < kOut; ++r)
    for (int k = 0; k < 3; ++k)
      as_lora.B[r * 3 + k] *= s.S[k];
  run_merge(merge_options(dir / "base", {dir / "so"}, dir / "out"));
  const double err =
      max_rel(weights_of(dir / "out", "l.q.weight"),
              reference(weights_of(dir / "base", "l.q.weight"), as_lora, 2.0, 1.0, false));
  INFO("rel err " << err);
  CHECK(err < 1e-6);
}

TEST_CASE("merge: bad input is refused before any output exists", "[merge]") {
  TempDir dir("ckpt-merge");
  write_base(dir / "base");
  write_base(dir / "huge", DType::BF16, 1e37f);
  LoraConfig cfg;
  cfg.r = 2;
  cfg.lora_alpha = 2;
  auto adapter = [&](const std::string& name, const LoraConfig& c, const LoraModule& m) {
    fs::create_directories(dir / name);
    write_lora_adapter(dir / name, c, {m});
    return dir / name;
  };
  const auto missing = adapter("missing", cfg, lora_module("l.nope", 2, kIn, kOut, 1));
  const auto shape = adapter("shape", cfg, lora_module("l.q", 2, kIn + 1, kOut, 1));
  LoraConfig pat = cfg;
  pat.rank_pattern = {{"zzz", 2}};
  const auto pattern = adapter("pattern", pat, lora_module("l.q", 2, kIn, kOut, 1));
  LoraModule big = lora_module("l.q", 2, kIn, kOut, 1);
  for (auto& x : big.A)
    x = 1.3e19f;
  for (auto& x : big.B)
    x = 1.3e19f;
  const auto overflow = adapter("overflow", cfg, big);

  struct Case {
    const char* what;
    MergeOptions o;
    std::string needle;
  };
  std::vector<Case> cases{
      {"module not in base", merge_options(dir / "base", {missing}, dir / "out"), "l.nope"},
      {"shape mismatch", merge_options(dir / "base", {shape}, dir / "out"), "l.q"},
      {"rank_pattern matches nothing", merge_options(dir / "base", {pattern}, dir / "out"), "zzz"},
      {"overflow to inf", merge_options(dir / "huge", {overflow}, dir / "out"), "l.q"},
  };
  MergeOptions w = merge_options(dir / "base", {shape}, dir / "out");
  w.weights = {1, 2};
  cases.push_back({"weights count", w, "--weights"});
  for (auto& c : cases) {
    INFO(c.what);
    try {
      run_merge(c.o);
      FAIL("no error");
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(exit_code(e.kind()) == 2);
      CHECK(std::string(e.what()).find(c.needle) != std::string::npos);
      CHECK(std::string(e.what()).find('\n') == std::string::npos);
    }
    CHECK_FALSE(fs::exists(dir / "out"));
  }
}

TEST_CASE("to-lora: exact is PEFT's concatenation; truncated drops exactly the SVD tail",
          "[merge]") {
  TempDir dir("ckpt-merge");
  LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 8;
  const LoraModule init = lora_module("l.q", 4, kIn, kOut, 21);
  LoraModule trained = init;
  const auto noise_a = gaussian(trained.A.size(), 22, 0.05f);
  const auto noise_b = gaussian(trained.B.size(), 23, 0.05f);
  for (std::size_t i = 0; i < trained.A.size(); ++i)
    trained.A[i] += noise_a[i];
  for (std::size_t i = 0; i < trained.B.size(); ++i)
    trained.B[i] += noise_b[i];
  fs::create_directories(dir / "init");
  fs::create_directories(dir / "trained");
  write_lora_adapter(dir / "init", cfg, {init});
  write_lora_adapter(dir / "trained", cfg, {trained});
  // s·(B·A − B₀·A₀) in f64, [out, in]
  std::vector<double> D(kOut * kIn, 0.0);
  for (std::int64_t o = 0; o < kOut; ++o)
    for (std::int64_t i = 0; i < kIn; ++i)
      for (int k = 0; k < 4; ++k)
        D[o * kIn + i] +=
            2.0 * (static_cast<double>(trained.B[o * 4 + k]) * trained.A[k * kIn + i] -
                   static_cast<double>(init.B[o * 4 + k]) * init.A[k * kIn + i]);
  double total = 0;
  for (double x : D)
    total += x * x;

  for (int rank : {0, 3}) {
    ToLoraOptions o;
    o.init_adapter = dir / "init";
    o.trained_adapter = dir / "trained";
    if (rank) o.rank = rank;
    o.common.output = dir / ("out" + std::to_string(rank));
    o.common.exec.progress = false;
    const Json j = run_to_lora(o);
    const LoraAdapter a = read_lora_adapter(o.common.output);
    REQUIRE(a.modules.size() == 1);
    const auto got = lora_delta(a, a.modules[0]);
    double err2 = 0;
    for (std::size_t i = 0; i < D.size(); ++i)
      err2 += (got[i] - D[i]) * (got[i] - D[i]);
    const double dropped = j["tensors"][0]["dropped_energy"].get<double>();
    INFO("rank " << rank << ": err² " << err2 << ", reported dropped " << dropped << ", total "
                 << total);
    if (!rank) {
      CHECK(a.config.r == 8);
      CHECK(a.config.lora_alpha == 16);
      CHECK(a.modules[0].rank == 8);
      CHECK(err2 <= 1e-10 * total);
    } else {
      CHECK(a.modules[0].rank == 3);
      CHECK(dropped > 1e-3 * total);
      CHECK(std::fabs(err2 - dropped) <= 1e-4 * total);
    }
  }
}
