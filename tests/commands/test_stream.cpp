// stream_checkpoint end to end on the bundled sample: passthrough is byte-identical and the same
// for every thread count; computed tensors land in plan order.
#include <catch2/catch.hpp>
#include <filesystem>

#include "ckptkit/commands/convert/convert.hpp"
#include "ckptkit/commands/inspect/inspect.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/engine/stream.hpp"
#include "ckptkit/io/checkpoint.hpp"
#include "support/fixtures.hpp"

using namespace ckpt;
using ckpt::test::read_bytes;
using ckpt::test::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kSample = ckpt::test::data_dir() / "bytegpt-base-bf16";

}  // namespace

TEST_CASE("the bundled sample opens and is what its README says", "[stream]") {
  const Checkpoint c = Checkpoint::open(kSample);
  CHECK(c.tensors().size() == 101);
  std::uint64_t params = 0;
  for (const auto& t : c.tensors()) {
    CHECK(t.info.dtype == DType::BF16);
    params += static_cast<std::uint64_t>(numel(t.info.shape));
  }
  CHECK(params == 10893312);
  REQUIRE(c.config().has_value());
  CHECK_FALSE(c.extra_files().empty());
}

TEST_CASE("passthrough convert is byte-identical for 1 and 3 threads", "[stream]") {
  TempDir dir("ckpt-stream");
  const Checkpoint in = Checkpoint::open(kSample);
  for (int threads : {1, 3}) {
    ConvertOptions o;
    o.input = kSample;
    o.common.output = dir / ("t" + std::to_string(threads));
    o.common.exec.threads = threads;
    o.common.exec.progress = false;
    o.common.max_shard_size = 4'000'000;  // reshard into several files
    const Json j = run_convert(o);
    CHECK(j["totals"]["cast"] == 0);
  }
  const Checkpoint a = Checkpoint::open(dir / "t1");
  CHECK(a.shards().size() > 3);
  for (const auto& t : in.tensors()) {
    const auto* o = a.find(t.info.name);
    REQUIRE(o != nullptr);
    CHECK(std::ranges::equal(a.view(*o).bytes, in.view(t).bytes));
  }
  CHECK(a.metadata() == in.metadata());
  // The model is in the output's model/ part, report.json beside it (output_layout).
  for (const auto& e : fs::directory_iterator(dir / "t1" / "model")) {
    INFO(e.path().filename());
    CHECK(read_bytes(e.path()) == read_bytes(dir / "t3" / "model" / e.path().filename()));
  }
  CHECK(fs::exists(dir / "t1" / "model" / "config.json"));
  CHECK(fs::exists(dir / "t1" / "report.json"));
  CHECK_FALSE(fs::exists(dir / "t1" / "model" / "report.json"));
}

TEST_CASE("computed tensors: plan order, cast values, errors name the tensor", "[stream]") {
  TempDir dir("ckpt-stream-cast");
  ConvertOptions o;
  o.input = kSample;
  o.common.output = dir / "f32";
  o.common.exec.threads = 2;
  o.common.exec.progress = false;
  o.dtype = DType::F32;
  const Json j = run_convert(o);
  CHECK(j["totals"]["cast"] == 101);
  const Checkpoint in = Checkpoint::open(kSample), out = Checkpoint::open(dir / "f32");
  for (std::size_t i = 0; i < in.tensors().size(); ++i) {
    const auto& t = in.tensors()[i];
    CHECK(out.tensors()[i].info.name == t.info.name);
    CHECK(out.tensors()[i].info.dtype == DType::F32);
    // bf16 -> f32 is exact, so casting back gives the original bytes.
    const auto back =
        convert_float_bytes(DType::F32, DType::BF16, out.view(out.tensors()[i]).bytes);
    CHECK(std::ranges::equal(back, in.view(t).bytes));
  }

  StreamJob job;
  job.input = &in;
  job.plan = [](const CheckpointTensor& t) {
    TensorPlan p;
    p.passthrough = false;
    p.outputs = {{t.info.name, t.info.dtype, t.info.shape}};
    return p;
  };
  job.compute = [](const CheckpointTensor& t, const TensorView&) -> TensorResult {
    if (t.info.name.find("layers.3.fc1") != std::string::npos)
      fail(ErrorKind::Numeric, "did not converge");
    TensorResult r;
    r.outputs.push_back(
        {t.info.name, t.info.dtype, t.info.shape, std::vector<std::byte>(t.info.nbytes())});
    return r;
  };
  fs::create_directories(dir / "bad");
  try {
    stream_checkpoint(job, dir / "bad", {}, {.threads = 2, .progress = false, .shard = nullptr},
                      "test");
    FAIL("no error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(e.kind() == ErrorKind::Numeric);
    CHECK(msg.find("model.safetensors") != std::string::npos);
    CHECK(msg.find("layers.3.fc1") != std::string::npos);
  }
}

TEST_CASE("inspect reports counts, targets and a verdict", "[stream]") {
  InspectOptions o;
  o.input = kSample;
  const Json j = run_inspect(o);
  CHECK(j["totals"]["tensors"] == 101);
  CHECK(j["totals"]["by_dtype"]["BF16"]["tensors"] == 101);
  // 36 linear weights of the 6 decoder layers (q, k, v, out_proj, fc1, fc2); not embeddings/head.
  CHECK(j["targets"]["tensors"] == 36);
  CHECK(j["valid"] == true);
}
