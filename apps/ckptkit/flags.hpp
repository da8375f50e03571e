// The flag layer: flag groups shared by the subcommands, bound into ckpt::CommonOptions, and the
// helpers every cmd_*.cpp uses to turn flags into library options and print results.
#pragma once

#include <CLI/CLI.hpp>
#include <cctype>
#include <memory>
#include <optional>
#include <string>

#include "ckptkit/core/dtype.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/engine/options.hpp"
#include "ckptkit/formats/quant_format.hpp"
#include "ckptkit/report/report.hpp"

namespace ckpt::cli {

/// The flag groups a subcommand can take, composed per command (each cmd_*.cpp says which), so
/// that no command accepts a flag it would ignore. Output and execution flags come with every
/// command that writes an output: -o, --force, --report, --quiet, --json, --threads,
/// --memory-budget.
enum FlagGroup : unsigned {
  kTargetFlags = 1,          ///< --target, --exclude
  kFanInFanOutFlags = 2,     ///< --fan-in-fan-out, --no-fan-in-fan-out: the math needs [out, in]
  kShardFlag = 4,            ///< --shard K/N (docs/distributed.md)
  kWriterFlags = 8,          ///< --max-shard-size, --zstd: the command writes a checkpoint
  kSeedFlag = 16,            ///< --seed: the command draws random numbers
  kModulePrefixFlag = 32,    ///< --module-prefix: checkpoint names vs the task model's
  kAdapterWriterFlags = 64,  ///< --task-type, --base-model-id: the command writes an adapter
};

/// Raw flag values before they are turned into library options (unused groups keep defaults).
struct CommonFlags {
  std::string output;
  bool force = false;
  std::vector<std::string> target, exclude;
  bool fan_in_fan_out = false, no_fan_in_fan_out = false;
  int threads = 0;
  std::string memory_budget = "0";
  std::uint64_t seed = 0;
  std::string max_shard_size = "5GB";
  bool zstd = false;
  std::string report;
  bool quiet = false;
  bool json = false;
  std::string shard;  // "K/N" or empty
  std::optional<std::string> module_prefix;
  std::string task_type = "CAUSAL_LM";
  std::optional<std::string> base_model_id;
};

/// Adds the output and execution flags and the `groups` (FlagGroup bits) to `cmd`.
void add_common_flags(CLI::App* cmd, CommonFlags& f, unsigned groups);
/// The flags that detail a quantizer (--block, --double-quant, the LQ double-quant parameters,
/// --layout, --compute-dtype), bound to the same-named fields of `o`; `dq_default` is the
/// command's default double quantization.
template <class Options>
void add_quant_detail_flags(CLI::App* cmd, Options& o, const std::string& dq_default) {
  cmd->add_option("--block", o.block,
                  "Block size B0, a power of two in 16..4096 (default 64; int8 without --block "
                  "is bitsandbytes row-wise)");
  cmd->add_option("--double-quant", o.double_quant,
                  "Quantize the block scales: bnb (QLoRA: mean offset, 8-bit dynamic map, nested "
                  "blocks of 256), lq (LQ-LoRA: b0-bit codes per group), none; default " +
                      dq_default)
      ->check(CLI::IsMember({"bnb", "lq", "none"}));
  cmd->add_option("--lq-scale-bits", o.lq_bits,
                  "LQ double quant: bits per block scale, b0 (default 8)");
  cmd->add_option("--lq-group", o.lq_group,
                  "LQ double quant: blocks per second-level scale, B1 (default 256)");
  cmd->add_option("--lq-scale-dtype", o.lq_scale_dtype,
                  "LQ double quant: second-level scale type fp32 (default), bf16, fp16");
  cmd->add_option("--layout", o.layout,
                  "auto (bitsandbytes' layout where it can store the config, ckptkit's "
                  "otherwise; default), bnb, ckptkit")
      ->check(CLI::IsMember({"auto", "bnb", "ckptkit"}));
  cmd->add_option("--compute-dtype", o.compute_dtype,
                  "bnb_4bit_compute_dtype written to quantization_config (default bfloat16)");
}

/// A scheme as the papers write it (NF4) is the flag's value (nf4).
inline std::string lower_scheme(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// The quantizer flags quantize and lq-decompose share: --scheme and add_quant_detail_flags.
/// `schemes` and `dq_default` are that command's scheme list and default.
template <class Options>
void add_quant_flags(CLI::App* cmd, Options& o, const std::string& schemes,
                     const std::string& dq_default) {
  cmd->add_option("--scheme", o.scheme, schemes)->transform(lower_scheme);
  add_quant_detail_flags(cmd, o, dq_default);
}

/// A quantization format named by one flag that takes the scheme (svd-init --quantize-residual,
/// merge --requantize) and the detail flags.
struct QuantFormatFlags {
  std::string scheme;  // empty: the flag was not given
  int block = 0;
  std::string double_quant;
  int lq_bits = 8, lq_group = 256;
  std::string lq_scale_dtype = "fp32", layout = "auto", compute_dtype = "bfloat16";
};

/// Adds `scheme_flag` (described by `help`) and the detail flags, bound to `q`.
void add_quant_format_flags(CLI::App* cmd, QuantFormatFlags& q, const std::string& scheme_flag,
                            const std::string& help);

/// The format `q` requests, or nullopt without `scheme_flag`; a detail flag given without it is
/// Error(Usage).
std::optional<QuantFormatRequest> requested_quant_format(const CLI::App* cmd,
                                                         const QuantFormatFlags& q,
                                                         const std::string& scheme_flag);

/// --niter and --oversample of the randomized SVD (svd-init, lq-decompose).
void add_randomized_svd_flags(CLI::App* cmd, int& niter, int& oversample);

/// --adapter-dtype: the float type the adapter tensors are stored in (parse_float_flag reads it).
void add_adapter_dtype_flag(CLI::App* cmd, std::string& dtype, const std::string& what);

/// Validates and converts (Error(Usage) on a bad size).
CommonOptions to_common(const CommonFlags& f, const std::vector<std::string>& argv);

/// Prints the report JSON to stdout when --json, else `summary` unless --quiet.
void print_result(const CommonFlags& f, const Json& report, const std::string& summary);

/// The float dtype a flag names ("f32", "bf16", ...); Error(Usage) "<flag>: unknown float type
/// '<value>'" otherwise.
DType parse_float_flag(const std::string& flag, const std::string& value);

/// The command line as given, for reports.
std::vector<std::string>& argv_store();

}  // namespace ckpt::cli
