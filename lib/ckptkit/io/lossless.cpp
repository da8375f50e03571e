#include "ckptkit/io/lossless.hpp"

#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "ckptkit/core/convert_kernels.hpp"
#include "ckptkit/core/error.hpp"
#include "ckptkit/core/interrupt.hpp"
#include "ckptkit/io/file_bytes.hpp"

namespace ckpt {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[4] = {'C', 'K', 'L', 'Z'};
constexpr std::uint32_t kRawFlag = 0x80000000u;
constexpr std::size_t kFixedHeader = 24;

enum class Reorder : std::uint8_t { Bytes = 0, BF16 = 1, F32 = 2 };

Reorder reorder_for(DType t) {
  if (t == DType::BF16) return Reorder::BF16;
  if (t == DType::F32) return Reorder::F32;
  return Reorder::Bytes;
}

void put_u32(std::vector<std::byte>& v, std::size_t at, std::uint32_t x) {
  for (int i = 0; i < 4; ++i)
    v[at + static_cast<std::size_t>(i)] = static_cast<std::byte>((x >> (8 * i)) & 0xFF);
}
void put_u64(std::vector<std::byte>& v, std::size_t at, std::uint64_t x) {
  for (int i = 0; i < 8; ++i)
    v[at + static_cast<std::size_t>(i)] = static_cast<std::byte>((x >> (8 * i)) & 0xFF);
}
std::uint64_t get_le(std::span<const std::byte> v, std::size_t at, int n) {
  std::uint64_t x = 0;
  for (int i = 0; i < n; ++i)
    x |= static_cast<std::uint64_t>(v[at + static_cast<std::size_t>(i)]) << (8 * i);
  return x;
}

// Splits elements [first, first+count) into `planes` byte planes (plane p at out + p*count):
// bf16 and f32 on the vector kernels (core/convert_kernels.hpp), the loops below finish the tail.
void split(Reorder r, std::size_t esize, const std::uint8_t* in, std::size_t first,
           std::size_t count, std::uint8_t* out) {
  const convert::Kernels* k = convert::kernels_for(active_simd_path());
  if (r == Reorder::BF16) {
    for (std::size_t i = k ? k->split_bf16(in + 2 * first, count, out) : 0; i < count; ++i) {
      const std::uint16_t u =
          static_cast<std::uint16_t>(in[2 * (first + i)] | (in[2 * (first + i) + 1] << 8));
      out[i] = static_cast<std::uint8_t>((u >> 7) & 0xFF);  // exponent
      out[count + i] =
          static_cast<std::uint8_t>(((u >> 8) & 0x80) | (u & 0x7F));  // sign + mantissa
    }
    return;
  }
  if (r == Reorder::F32) {
    for (std::size_t i = k ? k->split_f32(in + 4 * first, count, out) : 0; i < count; ++i) {
      std::uint32_t u;
      std::memcpy(&u, in + 4 * (first + i), 4);
      out[i] = static_cast<std::uint8_t>((u >> 23) & 0xFF);
      out[count + i] = static_cast<std::uint8_t>(((u >> 24) & 0x80) | ((u >> 16) & 0x7F));
      out[2 * count + i] = static_cast<std::uint8_t>((u >> 8) & 0xFF);
      out[3 * count + i] = static_cast<std::uint8_t>(u & 0xFF);
    }
    return;
  }
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t p = 0; p < esize; ++p)
      out[p * count + i] = in[esize * (first + i) + p];
}

void join(Reorder r, std::size_t esize, const std::uint8_t* planes, std::size_t first,
          std::size_t count, std::uint8_t* out) {
  const convert::Kernels* k = convert::kernels_for(active_simd_path());
  if (r == Reorder::BF16) {
    for (std::size_t i = k ? k->join_bf16(planes, count, out + 2 * first) : 0; i < count; ++i) {
      const std::uint32_t e = planes[i], m = planes[count + i];
      const std::uint16_t u = static_cast<std::uint16_t>(((m & 0x80) << 8) | (e << 7) | (m & 0x7F));
      out[2 * (first + i)] = static_cast<std::uint8_t>(u & 0xFF);
      out[2 * (first + i) + 1] = static_cast<std::uint8_t>(u >> 8);
    }
    return;
  }
  if (r == Reorder::F32) {
    for (std::size_t i = k ? k->join_f32(planes, count, out + 4 * first) : 0; i < count; ++i) {
      const std::uint32_t e = planes[i], b1 = planes[count + i], b2 = planes[2 * count + i],
                          b3 = planes[3 * count + i];
      const std::uint32_t u =
          ((b1 & 0x80) << 24) | (e << 23) | ((b1 & 0x7F) << 16) | (b2 << 8) | b3;
      std::memcpy(out + 4 * (first + i), &u, 4);
    }
    return;
  }
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t p = 0; p < esize; ++p)
      out[esize * (first + i) + p] = planes[p * count + i];
}

struct CctxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DctxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

std::string where_prefix(const std::string& where) {
  // located(file, tensor, "") already ends in ": ".
  if (where.size() >= 2 && where.compare(where.size() - 2, 2, ": ") == 0) return where;
  return where.empty() ? "" : where + ": ";
}

}  // namespace

void serial_for(std::size_t n, const std::function<void(std::size_t)>& body) {
  for (std::size_t i = 0; i < n; ++i)
    body(i);
}

std::vector<std::byte> lossless_encode(DType dtype, std::span<const std::byte> bytes,
                                       const LosslessOptions& options, const ParallelFor& pf) {
  Reorder r = reorder_for(dtype);
  std::size_t esize = dtype_size(dtype);
  if (bytes.size() % esize != 0) r = Reorder::Bytes, esize = 1;
  const std::size_t planes = esize;
  const std::size_t n = bytes.size() / esize;
  const std::size_t chunk = options.chunk_elems;
  const std::size_t nchunks = (n + chunk - 1) / chunk;
  const std::size_t nframes = nchunks * planes;

  // Frames compressed independently (in parallel), then concatenated in order.
  std::vector<std::vector<std::byte>> frames(nframes);
  std::vector<std::uint32_t> sizes(nframes);
  const auto* in = reinterpret_cast<const std::uint8_t*>(bytes.data());
  pf(nchunks, [&](std::size_t c) {
    thread_local std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
    const std::size_t first = c * chunk, count = std::min(chunk, n - first);
    std::vector<std::uint8_t> split_buf(count * planes);
    split(r, esize, in, first, count, split_buf.data());
    for (std::size_t p = 0; p < planes; ++p) {
      const std::uint8_t* src = split_buf.data() + p * count;
      std::vector<std::byte> dst(ZSTD_compressBound(count));
      ZSTD_CCtx_reset(cctx.get(), ZSTD_reset_session_and_parameters);
      ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, options.level);
      if (r != Reorder::Bytes && options.entropy_tuned) {
        // Byte planes of floats have almost no repeats: with short matches disabled (min match 7,
        // a tiny hash table) zstd spends its bits on Huffman-coded literals, which is what the
        // exponent plane needs (close to its order-0 entropy, better than -19 and fast).
        ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_minMatch, 7);
        ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_hashLog, 6);
      }
      const std::size_t got = ZSTD_compress2(cctx.get(), dst.data(), dst.size(), src, count);
      auto& frame = frames[c * planes + p];
      if (ZSTD_isError(got) || got >= count) {
        frame.assign(reinterpret_cast<const std::byte*>(src),
                     reinterpret_cast<const std::byte*>(src) + count);
        sizes[c * planes + p] = static_cast<std::uint32_t>(count) | kRawFlag;
      } else {
        dst.resize(got);
        frame = std::move(dst);
        sizes[c * planes + p] = static_cast<std::uint32_t>(got);
      }
    }
  });
  std::size_t total = kFixedHeader + 4 * nframes;
  for (const auto& f : frames)
    total += f.size();
  std::vector<std::byte> out(total);
  std::memcpy(out.data(), kMagic, 4);
  out[4] = static_cast<std::byte>(kLosslessVersion);
  out[5] = static_cast<std::byte>(r);
  out[6] = static_cast<std::byte>(planes);
  out[7] = std::byte{0};
  put_u64(out, 8, bytes.size());
  put_u32(out, 16, static_cast<std::uint32_t>(chunk));
  put_u32(out, 20, static_cast<std::uint32_t>(nchunks));
  std::size_t at = kFixedHeader;
  for (std::size_t f = 0; f < nframes; ++f, at += 4)
    put_u32(out, at, sizes[f]);
  for (const auto& f : frames) {
    if (!f.empty()) std::memcpy(out.data() + at, f.data(), f.size());
    at += f.size();
  }
  return out;
}

std::vector<std::byte> lossless_decode(std::span<const std::byte> blob, DType dtype,
                                       std::uint64_t nbytes, const std::string& where,
                                       const ParallelFor& pf) {
  const std::string pre = where_prefix(where);
  auto bad = [&](const std::string& what) {
    fail(ErrorKind::Format, pre + "lossless blob: " + what);
  };
  if (blob.size() < kFixedHeader || std::memcmp(blob.data(), kMagic, 4) != 0) bad("bad magic");
  if (static_cast<int>(blob[4]) != kLosslessVersion)
    bad("unsupported version " + std::to_string(static_cast<int>(blob[4])));
  const auto r = static_cast<Reorder>(blob[5]);
  const std::size_t planes = static_cast<std::size_t>(blob[6]);
  if (static_cast<std::uint8_t>(r) > 2 || planes == 0 || planes > 8) bad("bad layout");
  const std::size_t esize = planes;
  if ((r == Reorder::BF16 && esize != 2) || (r == Reorder::F32 && esize != 4))
    bad("layout does not match its plane count");
  if (r != Reorder::Bytes && dtype_size(dtype) != esize)
    bad("layout does not match dtype " + std::string(dtype_name(dtype)));
  const std::uint64_t stored = get_le(blob, 8, 8);
  if (stored != nbytes)
    bad("holds " + std::to_string(stored) + " bytes, expected " + std::to_string(nbytes));
  const std::size_t chunk = static_cast<std::size_t>(get_le(blob, 16, 4));
  const std::size_t nchunks = static_cast<std::size_t>(get_le(blob, 20, 4));
  if (nbytes % esize != 0) bad("size is not a multiple of the element size");
  const std::size_t n = nbytes / esize;
  if (chunk == 0 ? n != 0 : (n + chunk - 1) / chunk != nchunks)
    bad("chunk table does not match the size");
  const std::size_t nframes = nchunks * planes;
  if (blob.size() < kFixedHeader + 4 * nframes) bad("truncated frame table");
  std::vector<std::size_t> offset(nframes + 1);
  offset[0] = kFixedHeader + 4 * nframes;
  for (std::size_t f = 0; f < nframes; ++f) {
    const std::uint32_t s = static_cast<std::uint32_t>(get_le(blob, kFixedHeader + 4 * f, 4));
    offset[f + 1] = offset[f] + (s & ~kRawFlag);
    if (offset[f + 1] > blob.size()) bad("frame " + std::to_string(f) + " runs past the end");
  }
  if (offset[nframes] != blob.size()) bad("trailing bytes after the last frame");
  // Check every frame can hold its plane before allocating: a raw frame is the plane itself, and a
  // zstd frame expands at most 32768x (a 4-byte RLE block per 128 KiB), so a few bytes of blob can
  // never make us allocate gigabytes (found while adding fuzz_lossless).
  for (std::size_t f = 0; f < nframes; ++f) {
    const std::size_t c = f / planes, count = chunk == 0 ? 0 : std::min(chunk, n - c * chunk);
    const std::size_t len = offset[f + 1] - offset[f];
    const bool raw = get_le(blob, kFixedHeader + 4 * f, 4) & kRawFlag;
    if (raw ? len != count : count > len * 32768)
      bad("frame " + std::to_string(f) + " (" + std::to_string(len) + " bytes) cannot hold " +
          std::to_string(count) + " bytes");
  }
  std::vector<std::byte> out(nbytes);
  auto* o = reinterpret_cast<std::uint8_t*>(out.data());
  std::vector<std::string> errors(nchunks);
  pf(nchunks, [&](std::size_t c) {
    if (interrupt_requested()) return;  // seen after the loop
    thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx(ZSTD_createDCtx());
    const std::size_t first = c * chunk, count = std::min(chunk, n - first);
    std::vector<std::uint8_t> pl(count * planes);
    for (std::size_t p = 0; p < planes; ++p) {
      const std::size_t f = c * planes + p;
      const std::uint32_t s = static_cast<std::uint32_t>(get_le(blob, kFixedHeader + 4 * f, 4));
      const auto* src = blob.data() + offset[f];
      const std::size_t len = offset[f + 1] - offset[f];
      if (s & kRawFlag) {
        if (len != count) {
          errors[c] = "raw frame " + std::to_string(f) + " has the wrong size";
          return;
        }
        std::memcpy(pl.data() + p * count, src, len);
      } else {
        const std::size_t got =
            ZSTD_decompressDCtx(dctx.get(), pl.data() + p * count, count, src, len);
        if (ZSTD_isError(got) || got != count) {
          errors[c] = "frame " + std::to_string(f) + " does not decompress (" +
                      (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size") + ")";
          return;
        }
      }
    }
    join(r, esize, pl.data(), first, count, o);
  });
  throw_if_interrupted();
  for (const auto& e : errors)
    if (!e.empty()) bad(e);
  return out;
}

bool is_lossless_archive(const SafetensorsHeader& header) {
  for (const auto& [k, v] : header.metadata)
    if (k == kLosslessMarker) return true;
  return false;
}

std::vector<std::byte> decode_lossless_file(std::span<const std::byte> file,
                                            const SafetensorsHeader& header,
                                            const std::string& file_name) {
  nlohmann::ordered_json marker;
  for (const auto& [k, v] : header.metadata)
    if (k == kLosslessMarker) {
      try {
        marker = nlohmann::ordered_json::parse(v);
      } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::Format, file_name + ": " + kLosslessMarker + " metadata is not valid JSON");
      }
    }
  // Field types are checked before reading them: nlohmann's own errors are not ckpt::Error.
  if (!marker.is_object() || !marker.contains("version") ||
      !marker["version"].is_number_integer() ||
      marker["version"].get<std::int64_t>() != kLosslessVersion || !marker.contains("tensors") ||
      !marker["tensors"].is_object())
    fail(ErrorKind::Format,
         file_name + ": unsupported " + std::string(kLosslessMarker) + " metadata");
  Metadata meta;
  bool had_meta = false;
  if (marker.contains("metadata") && marker["metadata"].is_object()) {
    had_meta = true;
    for (const auto& [k, v] : marker["metadata"].items()) {
      if (!v.is_string())
        fail(ErrorKind::Format, file_name + ": original metadata value is not a string");
      meta.emplace_back(k, v.get<std::string>());
    }
  }
  std::vector<TensorInfo> infos;
  std::uint64_t at = 0;
  for (const auto& t : header.tensors) {
    const auto it = marker["tensors"].find(t.name);
    if (it == marker["tensors"].end() || !it->is_object())
      fail(ErrorKind::Format, located(file_name, t.name, "missing from the lossless metadata"));
    TensorInfo info;
    info.name = t.name;
    try {
      const auto dt = parse_dtype(it->at("dtype").get<std::string>());
      if (!dt)
        fail(ErrorKind::Format, located(file_name, t.name, "unknown dtype in lossless metadata"));
      info.dtype = *dt;
      for (const auto& d : it->at("shape"))
        if (!d.is_number_integer())  // a float would be cast to int64 (undefined when huge)
          fail(ErrorKind::Format,
               located(file_name, t.name, "bad dtype/shape in lossless metadata"));
      info.shape = it->at("shape").get<Shape>();
    } catch (const nlohmann::json::exception&) {
      fail(ErrorKind::Format, located(file_name, t.name, "bad dtype/shape in lossless metadata"));
    }
    std::uint64_t count = 1;
    for (auto d : info.shape) {
      if (d < 0) fail(ErrorKind::Format, located(file_name, t.name, "negative dimension"));
      const auto limit = static_cast<std::uint64_t>(INT64_MAX) / dtype_size(info.dtype);
      if (d != 0 && count > limit / static_cast<std::uint64_t>(d))
        fail(ErrorKind::Format, located(file_name, t.name, "shape in lossless metadata overflows"));
      count *= static_cast<std::uint64_t>(d);
    }
    const std::uint64_t nbytes =
        static_cast<std::uint64_t>(numel(info.shape)) * dtype_size(info.dtype);
    info.begin = at;
    info.end = at + nbytes;
    if (info.end < at) fail(ErrorKind::Format, located(file_name, t.name, "sizes overflow"));
    at = info.end;
    infos.push_back(std::move(info));
  }
  // The whole file's expansion is bounded before anything is decoded (decompression bombs).
  check_expansion(file.size(), at, file_name);
  auto out = serialize_header(infos, meta, had_meta);
  out.reserve(out.size() + at);
  for (std::size_t i = 0; i < infos.size(); ++i) {
    throw_if_interrupted();
    const auto& t = header.tensors[i];
    const auto blob = file.subspan(header.data_start + t.begin, t.nbytes());
    const auto data = lossless_decode(blob, infos[i].dtype, infos[i].end - infos[i].begin,
                                      located(file_name, t.name, ""));
    out.insert(out.end(), data.begin(), data.end());
  }
  return out;
}

LosslessArchiveWriter::LosslessArchiveWriter(fs::path dir, Metadata original_metadata,
                                             bool had_metadata, std::uint64_t max_shard_size)
    : dir_(std::move(dir)),
      original_(std::move(original_metadata)),
      had_metadata_(had_metadata),
      max_shard_size_(max_shard_size) {}

LosslessArchiveWriter::~LosslessArchiveWriter() {
  if (out_) std::fclose(out_);
  std::error_code ec;
  for (const auto& p : parts_)
    fs::remove(p.path, ec);
}

void LosslessArchiveWriter::add(const std::string& name, DType dtype, const Shape& shape,
                                std::span<const std::byte> blob) {
  if (parts_.empty() ||
      (parts_.back().bytes > 0 && parts_.back().bytes + blob.size() > max_shard_size_)) {
    if (out_ && std::fclose(out_) != 0)
      fail(ErrorKind::Io, parts_.back().path.string() + ": write failed");
    out_ = nullptr;
    Part p;
    p.path = dir_ / (".lossless-part-" + std::to_string(parts_.size()));
    out_ = std::fopen(p.path.c_str(), "wb");
    if (!out_)
      fail(ErrorKind::Io, p.path.string() + ": cannot create (" + std::strerror(errno) + ")");
    parts_.push_back(std::move(p));
  }
  if (!blob.empty() && std::fwrite(blob.data(), 1, blob.size(), out_) != blob.size())
    fail(ErrorKind::Io,
         parts_.back().path.string() + ": write failed (" + std::strerror(errno) + ")");
  parts_.back().entries.push_back({name, dtype, shape, blob.size()});
  parts_.back().bytes += blob.size();
}

void LosslessArchiveWriter::finish() {
  if (out_ && std::fclose(out_) != 0)
    fail(ErrorKind::Io, parts_.back().path.string() + ": write failed");
  out_ = nullptr;
  const std::size_t n = parts_.size();
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < n; ++s) {
    char name[96];
    // Not transformers' names (model.safetensors, model-0000k-of-0000N.safetensors, their
    // index): it must fail to find weights here, not load byte blobs as parameters.
    if (n == 1)
      std::snprintf(name, sizeof name, "model.%s.safetensors", kLosslessFileTag);
    else
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.%s.safetensors", s + 1, n,
                    kLosslessFileTag);
    nlohmann::ordered_json marker = {{"version", kLosslessVersion}, {"codec", "byteplanes+zstd"}};
    nlohmann::ordered_json tensors = nlohmann::ordered_json::object();
    std::vector<TensorInfo> infos;
    std::uint64_t at = 0;
    for (const auto& e : parts_[s].entries) {
      tensors[e.name] = {{"dtype", std::string(dtype_name(e.dtype))}, {"shape", e.shape}};
      infos.push_back(
          {e.name, DType::U8, Shape{static_cast<std::int64_t>(e.size)}, at, at + e.size});
      at += e.size;
      weight_map[e.name] = name;
    }
    marker["tensors"] = tensors;
    if (had_metadata_) {
      nlohmann::ordered_json m = nlohmann::ordered_json::object();
      for (const auto& [k, v] : original_)
        m[k] = v;
      marker["metadata"] = m;
    }
    Metadata meta = {{"format", "pt"}, {kLosslessMarker, marker.dump()}};
    const auto header = serialize_header(infos, meta, true);
    const fs::path final_path = dir_ / name;
    std::FILE* f = std::fopen(final_path.c_str(), "wb");
    if (!f)
      fail(ErrorKind::Io, final_path.string() + ": cannot create (" + std::strerror(errno) + ")");
    bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
    std::FILE* in = std::fopen(parts_[s].path.c_str(), "rb");
    if (!in) ok = false;
    std::vector<char> buf(8 << 20);
    while (ok) {
      const std::size_t got = std::fread(buf.data(), 1, buf.size(), in);
      if (got == 0) break;
      ok = std::fwrite(buf.data(), 1, got, f) == got;
    }
    if (in) std::fclose(in);
    if (std::fclose(f) != 0 || !ok) fail(ErrorKind::Io, final_path.string() + ": write failed");
    std::error_code ec;
    fs::remove(parts_[s].path, ec);
    files_.push_back(name);
    bytes_written_ += header.size() + at;
    total += at;
  }
  parts_.clear();
  if (n > 1) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}},
                                    {"weight_map", weight_map}};
    const std::string index_name =
        std::string("model.") + kLosslessFileTag + ".safetensors.index.json";
    const fs::path p = dir_ / index_name;
    std::FILE* f = std::fopen(p.c_str(), "wb");
    if (!f) fail(ErrorKind::Io, p.string() + ": cannot create");
    const std::string text = index.dump(2) + "\n";
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) != 0 || !ok) fail(ErrorKind::Io, p.string() + ": write failed");
    files_.push_back(index_name);
  }
}

}  // namespace ckpt
