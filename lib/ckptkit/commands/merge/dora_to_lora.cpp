// `ckptkit merge --to-lora BASE DORA_ADAPTER`: a DoRA adapter as a plain LoRA of a chosen rank.
// DoRA's merged weight W' = m / ‖W + s·B·A‖ · (W + s·B·A) (per output feature) differs from W by
// D = W' − W, which is not low-rank (the magnitude rescales W itself). The LoRA is the best rank-k
// approximation of D (exact SVD), written with alpha = rank (scaling 1), B = U_k·√S_k and
// A = √S_k·V_kᵀ; the energy it drops, ‖D − B·A‖², is measured per module in f64.
#include <Eigen/Core>
#include <cmath>

#include "ckptkit/adapters/lora_read.hpp"
#include "ckptkit/adapters/lora_write.hpp"
#include "ckptkit/commands/merge/converted_lora.hpp"
#include "ckptkit/commands/merge/merge.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/timing.hpp"
#include "ckptkit/engine/report_out.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/engine/targets.hpp"
#include "ckptkit/io/output_dir.hpp"
#include "ckptkit/linalg/svd.hpp"

namespace ckpt {
namespace {

using RowD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// D = W' − W in [out, in] orientation, f64.
RowD dora_delta(const Checkpoint& base, const LoraModule& m, double scale) {
  const CheckpointTensor& t = *base.find(m.base_tensor);
  std::vector<double> w(static_cast<std::size_t>(m.out * m.in));
  decode_to_f64(t.info.dtype, base.view(t).bytes, w);
  RowD W =
      Eigen::Map<const RowD>(w.data(), m.transposed ? m.in : m.out, m.transposed ? m.out : m.in);
  if (m.transposed) W.transposeInPlace();
  const RowD BA = (Eigen::Map<const RowF>(m.B.data(), m.out, m.rank) *
                   Eigen::Map<const RowF>(m.A.data(), m.rank, m.in))
                      .cast<double>();
  const RowD V = W + scale * BA;
  RowD D(m.out, m.in);
  for (std::int64_t r = 0; r < m.out; ++r) {
    const double factor =
        static_cast<double>(m.magnitude[static_cast<std::size_t>(r)]) / V.row(r).norm();
    D.row(r) = factor * V.row(r) - W.row(r);
  }
  return D;
}

}  // namespace

bool is_dora_adapter(const std::filesystem::path& dir) {
  for (const char* n : {"adapter_config.json", "adapter_config.json.zst"})
    if (std::filesystem::is_regular_file(dir / n)) {
      try {
        return read_lora_adapter(dir).config.use_dora;
      } catch (const Error&) {
        return false;  // not a LoRA adapter: the caller's own path reports it
      }
    }
  return false;
}

Json run_dora_to_lora(const ToLoraOptions& o) {
  const auto start = Clock::now();
  if (o.rank && *o.rank < 1) fail(ErrorKind::Usage, "--rank must be at least 1");
  const Checkpoint base = Checkpoint::open(o.init_adapter);
  LoraAdapter dora = read_lora_adapter(o.trained_adapter);
  resolve_lora_adapter(dora, base, checkpoint_naming(base, o.common.targets));
  const std::string file = dora.weights.string();
  for (const auto& m : dora.modules)
    if (m.embedding) fail(ErrorKind::Unsupported, located(file, m.module, "DoRA on an embedding"));

  OutputDir out(o.common.output, o.common.force, {o.init_adapter, o.trained_adapter},
                o.common.report_path);
  const int rank = o.rank.value_or(dora.config.r);
  std::vector<ConvertedModule> done(dora.modules.size());
  run_ordered(
      dora.modules.size(),
      [&](std::size_t i) {
        const auto& m = dora.modules[i];
        return static_cast<std::uint64_t>(m.in * m.out) * 40;
      },
      [&](std::size_t i) -> Commit {
        const auto t0 = Clock::now();
        const LoraModule& m = dora.modules[i];
        const RowD D = dora_delta(base, m, dora.config.scaling_for(m.module));
        const RowF Df = D.cast<float>();
        const SvdResult svd = exact_svd(
            std::span<const float>(Df.data(), static_cast<std::size_t>(Df.size())), m.out, m.in);
        const int k = static_cast<int>(std::min<std::int64_t>(rank, svd.k));
        RowF B(m.out, k), A(k, m.in);
        for (int j = 0; j < k; ++j) {
          const float root = std::sqrt(svd.S[static_cast<std::size_t>(j)]);
          for (std::int64_t r = 0; r < m.out; ++r)
            B(r, j) = svd.U[static_cast<std::size_t>(r * svd.k + j)] * root;
          for (std::int64_t c = 0; c < m.in; ++c)
            A(j, c) = svd.Vt[static_cast<std::size_t>(j * m.in + c)] * root;
        }
        ConvertedModule c;
        c.module = {m.module,
                    false,
                    k,
                    m.in,
                    m.out,
                    std::vector<float>(A.data(), A.data() + A.size()),
                    std::vector<float>(B.data(), B.data() + B.size()),
                    {},
                    m.base_tensor,
                    m.transposed};
        // What the written factors miss, in f64 against the exact D (after their f32 rounding).
        c.total = D.squaredNorm();
        c.dropped = (D - (B * A).cast<double>()).squaredNorm();
        c.row = converted_row(m.base_tensor, m, c, t0);
        done[i] = std::move(c);
        return [] {};
      },
      o.common.exec);

  LoraConfig cfg = converted_config(dora.config, o);
  cfg.extra["use_dora"] = false;
  cfg.use_dora = false;
  set_uniform_rank(cfg, rank, done);
  cfg.fan_in_fan_out = false;
  for (const auto& c : done)
    cfg.fan_in_fan_out = cfg.fan_in_fan_out || c.module.transposed;
  Report report("merge", o.common.argv);
  report.add_input("base", o.init_adapter.string(), fingerprint(base));
  report.add_input("dora_adapter", o.trained_adapter.string(),
                   fingerprint(Checkpoint::open(dora.weights)));
  report.settings() = {
      {"mode", "dora-to-lora"}, {"format_in", "dora"},
      {"rank", rank},           {"adapter_dtype", std::string(dtype_name(o.adapter_dtype))},
      {"notes", dora.notes},    {"svd", "exact SVD of D = W' - W (f32), energies in f64"}};
  return commit_converted_lora(done, cfg, report, out, o, start);
}

}  // namespace ckpt
