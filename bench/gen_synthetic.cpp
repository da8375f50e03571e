// ckptkit-gen-synthetic: writes a Llama-2-7B-shaped checkpoint of synthetic weights for benchmarks.
//
// Each matrix is a low-rank part with a decaying spectrum plus Gaussian-like noise,
//   W = U diag(s) V + tau * N,   s_i = alpha * tau * (sqrt(m) + sqrt(n)) * i^-0.5,
// with U [m, r], V [r, n] of N(0, 1/m), N(0, 1/n) entries (nearly orthonormal columns/rows at
// these sizes), so the top singular values stand above the noise bulk (edge tau*(sqrt m + sqrt n))
// and decay like i^-0.5 into it, as trained LLM weights do. Everything is drawn from
// ckpt::Rng(seed, tensor name [+ block]) so the bytes depend only on (seed, name): any thread
// count gives the same files. Tensors stream through ShardedWriter one at a time (plus the next
// one being generated), so memory stays near two tensors whatever the model size.
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/interrupt.hpp"
#include "ckptkit/core/rng.hpp"
#include "ckptkit/core/units.hpp"
#include "ckptkit/engine/engine.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/io/writer.hpp"

namespace {

using ckpt::DType;
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Options {
  int layers = 2;
  std::string out;
  std::string dtype = "bf16";
  std::uint64_t seed = 0;
  std::string max_shard_size = "5GB";
  std::string spectrum = "decay";
  int rank = 64;
  int hidden = 4096, intermediate = 11008, vocab = 32000;
  int threads = 0;
  bool force = false;
};

/// Rows generated per noise stream: fixed, so the bytes do not depend on how work is split.
constexpr std::int64_t kBlockRows = 64;
constexpr float kTau = 0.02f;   // noise std, the typical scale of trained LLM weights
constexpr float kAlpha = 4.0f;  // top singular value over the noise edge

/// Approximately normal from one 64-bit draw (sum of four 16-bit uniforms, Irwin-Hall, scaled to
/// unit variance): 5x cheaper than Box-Muller, which matters at 4 billion values.
inline float fast_normal(ckpt::Rng& rng) {
  const std::uint64_t u = rng.next_u64();
  const float s =
      static_cast<float>((u & 0xffff) + ((u >> 16) & 0xffff) + ((u >> 32) & 0xffff) + (u >> 48));
  return (s * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

MatF gaussian(std::int64_t rows, std::int64_t cols, float scale, std::uint64_t seed,
              const std::string& stream) {
  ckpt::Rng rng(seed, stream);
  MatF m(rows, cols);
  for (std::int64_t i = 0; i < m.size(); ++i)
    m.data()[i] = static_cast<float>(rng.normal()) * scale;
  return m;
}

ckpt::OwnedTensor make_matrix(const ckpt::TensorSpec& spec, const Options& o) {
  const std::int64_t m = spec.shape[0], n = spec.shape[1];
  ckpt::OwnedTensor t{spec.name, spec.dtype, spec.shape, std::vector<std::byte>(spec.nbytes())};
  const bool decay = o.spectrum == "decay";
  const int r = static_cast<int>(std::min<std::int64_t>({o.rank, m, n}));
  MatF us, v;
  if (decay) {
    // U scaled by the singular values once, so each block is one GEMM.
    us = gaussian(m, r, 1.0f / std::sqrt(static_cast<float>(m)), o.seed, spec.name + "#U");
    v = gaussian(r, n, 1.0f / std::sqrt(static_cast<float>(n)), o.seed, spec.name + "#V");
    const float top =
        kAlpha * kTau * (std::sqrt(static_cast<float>(m)) + std::sqrt(static_cast<float>(n)));
    for (int i = 0; i < r; ++i)
      us.col(i) *= top / std::sqrt(static_cast<float>(i + 1));
  }
  const std::size_t item = ckpt::dtype_size(spec.dtype);
  const auto blocks = static_cast<std::size_t>((m + kBlockRows - 1) / kBlockRows);
  ckpt::parallel_chunks(blocks, 1, [&](std::size_t b0, std::size_t b1) {
    MatF block;
    for (std::size_t b = b0; b < b1; ++b) {
      const std::int64_t r0 = static_cast<std::int64_t>(b) * kBlockRows;
      const std::int64_t rows = std::min(kBlockRows, m - r0);
      if (decay)
        block.noalias() = us.middleRows(r0, rows) * v;
      else
        block.setZero(rows, n);
      ckpt::Rng rng(o.seed, spec.name + "#N" + std::to_string(b));
      for (std::int64_t i = 0; i < block.size(); ++i)
        block.data()[i] += kTau * fast_normal(rng);
      const std::size_t count = static_cast<std::size_t>(rows * n);
      ckpt::encode_from_f32(
          spec.dtype, std::span<const float>(block.data(), count),
          std::span<std::byte>(t.bytes.data() + static_cast<std::size_t>(r0 * n) * item,
                               count * item));
    }
  });
  return t;
}

ckpt::OwnedTensor make_vector(const ckpt::TensorSpec& spec, const Options& o) {
  // RMSNorm weights: around 1 with a little spread.
  ckpt::Rng rng(o.seed, spec.name);
  std::vector<float> v(static_cast<std::size_t>(spec.shape[0]));
  for (auto& x : v)
    x = 1.0f + 0.05f * fast_normal(rng);
  return ckpt::make_tensor(spec.name, spec.dtype, spec.shape, v);
}

std::vector<ckpt::TensorSpec> llama_plan(const Options& o, DType dt) {
  const std::int64_t h = o.hidden, f = o.intermediate, v = o.vocab;
  std::vector<ckpt::TensorSpec> plan = {{"model.embed_tokens.weight", dt, {v, h}}};
  for (int i = 0; i < o.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    // Alphabetical within a layer, as transformers' save_pretrained lists them.
    plan.push_back({p + "input_layernorm.weight", dt, {h}});
    plan.push_back({p + "mlp.down_proj.weight", dt, {h, f}});
    plan.push_back({p + "mlp.gate_proj.weight", dt, {f, h}});
    plan.push_back({p + "mlp.up_proj.weight", dt, {f, h}});
    plan.push_back({p + "post_attention_layernorm.weight", dt, {h}});
    for (const char* a : {"k_proj", "o_proj", "q_proj", "v_proj"})
      plan.push_back({p + "self_attn." + a + ".weight", dt, {h, h}});
  }
  plan.push_back({"model.norm.weight", dt, {h}});
  plan.push_back({"lm_head.weight", dt, {v, h}});
  return plan;
}

nlohmann::ordered_json llama_config(const Options& o, DType dt) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", o.hidden},
          {"intermediate_size", o.intermediate},
          {"num_hidden_layers", o.layers},
          {"num_attention_heads", std::max(1, o.hidden / 128)},
          {"num_key_value_heads", std::max(1, o.hidden / 128)},
          {"vocab_size", o.vocab},
          {"max_position_embeddings", 4096},
          {"rms_norm_eps", 1e-5},
          {"hidden_act", "silu"},
          {"torch_dtype", dt == DType::BF16  ? "bfloat16"
                          : dt == DType::F16 ? "float16"
                                             : "float32"},
          {"tie_word_embeddings", false},
          {"ckptkit_synthetic", {{"seed", o.seed}, {"spectrum", o.spectrum}, {"rank", o.rank}}}};
}

int run(const Options& o) {
  const auto dt = ckpt::parse_float_dtype(o.dtype);
  if (!dt || *dt == DType::F64) ckpt::fail(ckpt::ErrorKind::Usage, "--dtype: bf16, f16 or f32");
  if (o.spectrum != "decay" && o.spectrum != "gauss")
    ckpt::fail(ckpt::ErrorKind::Usage, "--spectrum: decay or gauss");
  if (o.layers < 0 || o.hidden <= 0 || o.intermediate <= 0 || o.vocab <= 0 || o.rank <= 0)
    ckpt::fail(ckpt::ErrorKind::Usage, "sizes must be positive");
  const auto plan = llama_plan(o, *dt);
  ckpt::OutputDir out(o.out, o.force);
  ckpt::WriterOptions w;
  w.max_shard_size = ckpt::parse_size(o.max_shard_size, "--max-shard-size");
  w.metadata = {{"format", "pt"}};
  ckpt::ShardedWriter writer(out.path(), plan, w);
  std::uint64_t largest = 0, total = 0;
  for (const auto& p : plan) {
    largest = std::max(largest, p.nbytes());
    total += p.nbytes();
  }
  ckpt::ExecOptions exec;
  exec.threads = o.threads;
  exec.memory_budget = 2 * largest;  // generate the next tensor while the previous one is written
  ckpt::run_ordered(
      plan.size(), [&](std::size_t i) { return plan[i].nbytes(); },
      [&](std::size_t i) -> ckpt::Commit {
        auto t = std::make_shared<ckpt::OwnedTensor>(
            plan[i].shape.size() == 2 ? make_matrix(plan[i], o) : make_vector(plan[i], o));
        return [&writer, t] { writer.write(t->name, t->bytes); };
      },
      exec);
  writer.finish();
  ckpt::write_text_file(out.path() / "config.json", llama_config(o, *dt).dump(2) + "\n");
  out.commit();
  std::printf("wrote %s: %zu tensors, %s in %zu files\n", o.out.c_str(), plan.size(),
              ckpt::format_bytes(total).c_str(), writer.files().size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ckpt::install_interrupt_handlers();
  Options o;
  CLI::App app{"Writes a Llama-2-7B-shaped synthetic checkpoint (decaying spectra) for benchmarks"};
  app.add_option("--layers", o.layers, "Decoder layers (Llama-2-7B has 32)")->required();
  app.add_option("--out", o.out, "Output directory (written atomically)")->required();
  app.add_option("--dtype", o.dtype, "bf16 (default), f16 or f32");
  app.add_option("--seed", o.seed, "Seed (default 0)");
  app.add_option("--max-shard-size", o.max_shard_size, "Largest shard (default 5GB)");
  app.add_option("--spectrum", o.spectrum,
                 "decay (low-rank i^-0.5 spectrum + noise, default) or gauss");
  app.add_option("--rank", o.rank, "Rank of the decaying part (default 64)");
  app.add_option("--hidden", o.hidden, "Hidden size (default 4096)");
  app.add_option("--intermediate", o.intermediate, "MLP size (default 11008)");
  app.add_option("--vocab", o.vocab, "Vocabulary (default 32000)");
  app.add_option("--threads", o.threads, "Worker threads (default: all cores)");
  app.add_flag("--force", o.force, "Replace an existing output");
  app.footer(
      "Example:\n  ckptkit-gen-synthetic --layers 20 --out /tmp/llama-syn --dtype bf16 --seed 1");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const ckpt::Error& e) {
    std::fprintf(stderr, "ckptkit-gen-synthetic: error: %s\n", e.what());
    return ckpt::exit_code(e.kind());
  }
}
