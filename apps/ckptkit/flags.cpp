#include "flags.hpp"

#include <charconv>
#include <cstdio>

#include "ckptkit/core/units.hpp"
#include "ckptkit/engine/shard.hpp"

namespace ckpt::cli {

std::vector<std::string>& argv_store() {
  static std::vector<std::string> argv;
  return argv;
}

void add_common_flags(CLI::App* cmd, CommonFlags& f, unsigned groups) {
  cmd->add_option("-o,--output", f.output, "Output directory (written atomically)")->required();
  cmd->add_flag("--force", f.force, "Replace an existing output directory");
  if (groups & kTargetFlags) {
    cmd->add_option("--target", f.target,
                    "Modules to process: PEFT-style suffixes (q_proj,v_proj) or regexes; "
                    "default: every 2-D linear weight except embeddings and lm_head")
        ->delimiter(',');
    cmd->add_option("--exclude", f.exclude, "Modules to leave alone (suffixes or regexes)")
        ->delimiter(',');
  }
  if (groups & kFanInFanOutFlags) {
    cmd->add_flag(
        "--fan-in-fan-out", f.fan_in_fan_out,
        "Weights are stored [in, out] (GPT-2 Conv1D); default: from config.json model_type");
    cmd->add_flag("--no-fan-in-fan-out", f.no_fan_in_fan_out, "Weights are stored [out, in]");
  }
  if (groups & kModulePrefixFlag)
    cmd->add_option("--module-prefix", f.module_prefix,
                    "Attribute of the task model that holds the base model (transformers' "
                    "base_model_prefix, e.g. transformer); default: from config.json model_type "
                    "(docs/architectures.md); '' for none");
  if (groups & kAdapterWriterFlags) {
    cmd->add_option("--task-type", f.task_type,
                    "The model PEFT wraps, which fixes the adapter's module names: CAUSAL_LM "
                    "(default), SEQ_CLS, TOKEN_CLS, QUESTION_ANS, SEQ_2_SEQ_LM, "
                    "FEATURE_EXTRACTION");
    cmd->add_option("--base-model-id", f.base_model_id,
                    "base_model_name_or_path written into adapter_config.json (default: the "
                    "input's config.json _name_or_path, else the input's absolute path)");
  }
  if (groups & kShardFlag)
    cmd->add_option("--shard", f.shard,
                    "K/N (0-based): compute a deterministic 1/N of the targets (balanced by bytes) "
                    "into a partial output; join the N parts with `ckptkit stitch`");
  cmd->add_option("--threads", f.threads, "Worker threads (default: all cores)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            int n = -1;
            const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
            return r.ec == std::errc() && r.ptr == v.data() + v.size() && n >= 0 && n <= 4096
                       ? ""
                       : "'" + v + "' is not a thread count (0 = all cores, up to 4096)";
          },
          ""));
  cmd->add_option("--memory-budget", f.memory_budget,
                  "Bytes of working set in flight, e.g. 4G (default: 2 tensors per thread)");
  if (groups & kSeedFlag)
    cmd->add_option("--seed", f.seed, "Seed for randomized algorithms (default 0)");
  if (groups & kWriterFlags) {
    cmd->add_option("--max-shard-size", f.max_shard_size,
                    "Largest output shard, e.g. 5GB (default), 500MB");
    cmd->add_flag("--zstd", f.zstd, "Write output weights as .zst (standard zstd frames)");
  }
  cmd->add_option("--report", f.report, "Also write the JSON report to this file");
  cmd->add_flag("-q,--quiet", f.quiet, "No progress bar or summary");
  cmd->add_flag("--json", f.json, "Print the JSON report on stdout");
}

void add_randomized_svd_flags(CLI::App* cmd, int& niter, int& oversample) {
  cmd->add_option("--niter", niter, "Randomized SVD power iterations (default 4)");
  cmd->add_option("--oversample", oversample, "Randomized SVD extra sketch columns (default 10)");
}

void add_quant_format_flags(CLI::App* cmd, QuantFormatFlags& q, const std::string& scheme_flag,
                            const std::string& help) {
  cmd->add_option(scheme_flag, q.scheme, help)->transform(lower_scheme);
  add_quant_detail_flags(cmd, q, "bnb");
}

std::optional<QuantFormatRequest> requested_quant_format(const CLI::App* cmd,
                                                         const QuantFormatFlags& q,
                                                         const std::string& scheme_flag) {
  if (q.scheme.empty()) {
    for (const char* flag : {"--block", "--double-quant", "--lq-scale-bits", "--lq-group",
                             "--lq-scale-dtype", "--layout", "--compute-dtype"})
      if (cmd->count(flag)) fail(ErrorKind::Usage, std::string(flag) + " goes with " + scheme_flag);
    return std::nullopt;
  }
  return QuantFormatRequest{q.scheme,   q.block,          q.double_quant, q.lq_bits,
                            q.lq_group, q.lq_scale_dtype, q.layout};
}

void add_adapter_dtype_flag(CLI::App* cmd, std::string& dtype, const std::string& what) {
  cmd->add_option("--adapter-dtype", dtype, what + ": f32 (default), bf16, f16");
}

CommonOptions to_common(const CommonFlags& f, const std::vector<std::string>& argv) {
  CommonOptions c;
  c.output = f.output;
  c.force = f.force;
  c.targets.target = f.target;
  c.targets.exclude = f.exclude;
  if (f.fan_in_fan_out) c.targets.fan_in_fan_out = true;
  if (f.no_fan_in_fan_out) c.targets.fan_in_fan_out = false;
  c.targets.module_prefix = f.module_prefix;
  const auto task = parse_task_type(f.task_type);
  if (!task)
    fail(ErrorKind::Usage, "--task-type: unknown task type '" + f.task_type +
                               "' (CAUSAL_LM, SEQ_CLS, TOKEN_CLS, QUESTION_ANS, SEQ_2_SEQ_LM, "
                               "FEATURE_EXTRACTION)");
  c.targets.task = *task;
  c.base_model_id = f.base_model_id;
  c.exec.threads = f.threads;
  c.exec.memory_budget = parse_size(f.memory_budget, "--memory-budget");
  c.exec.progress = !f.quiet && !f.json;
  c.seed = f.seed;
  c.max_shard_size = parse_size(f.max_shard_size, "--max-shard-size");
  if (c.max_shard_size == 0) fail(ErrorKind::Usage, "--max-shard-size must be positive");
  c.zstd = f.zstd;
  if (!f.report.empty()) c.report_path = f.report;
  c.argv = argv;
  if (!f.shard.empty())
    c.exec.shard = std::make_shared<ShardRun>(parse_shard_spec(f.shard), c.output, argv);
  return c;
}

void print_result(const CommonFlags& f, const Json& report, const std::string& summary) {
  if (f.json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else if (!f.quiet) {
    std::printf("%s", summary.c_str());
  }
  std::fflush(stdout);
}

DType parse_float_flag(const std::string& flag, const std::string& value) {
  const auto dt = parse_float_dtype(value);
  if (!dt) fail(ErrorKind::Usage, flag + ": unknown float type '" + value + "'");
  return *dt;
}

}  // namespace ckpt::cli
