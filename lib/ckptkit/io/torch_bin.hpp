// PyTorch `.bin` checkpoints (torch.save of a state dict, the zip format of PyTorch >= 1.6), read
// without executing anything: a zip reader for the stored (uncompressed) entries torch writes and
// a pickle interpreter limited to what torch.save emits for a state dict, the allowlist of
// torch.load(weights_only=True) (docs/formats.md, "PyTorch .bin"):
//   globals   collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter /
//             _rebuild_parameter_with_state, torch.<T>Storage for the storage dtypes
//   opcodes   protocol 2-4 data opcodes, REDUCE and BUILD on those globals only, BINPERSID for
//             ('storage', type, key, location, numel)
// Anything else (another GLOBAL such as os.system, INST, OBJ, NEWOBJ, EXT*) is refused before
// it could mean anything. Containers are frozen once placed in another and nested at most 16 deep,
// so a crafted pickle cannot build cycles or unbounded depth.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "ckptkit/io/safetensors.hpp"

namespace ckpt {

/// A torch checkpoint seen as a safetensors header over bytes: `header.data_start` is 0 and every
/// tensor's [begin, end) is an absolute range of the file when it is a contiguous run of its
/// storage (tensors sharing a storage share bytes: tied weights); when any tensor is a strided or
/// otherwise non-contiguous view, every tensor is copied into `owned` and the ranges refer to it.
struct TorchBin {
  SafetensorsHeader header;
  std::vector<std::byte> owned;
};

/// True when `file` starts like a zip archive (what torch.save writes since 1.6).
bool is_zip(std::span<const std::byte> file);
/// True when `file` starts like a pickle (the legacy torch.save format, or a bare pickle).
bool is_legacy_torch(std::span<const std::byte> file);

/// Reads a torch zip checkpoint. Error(Format) for a malformed zip or pickle, Error(Unsupported)
/// for anything outside the allowlist, a compressed entry, a big-endian archive or the legacy
/// format; each one line naming `file_name` and, where there is one, the tensor.
TorchBin parse_torch_bin(std::span<const std::byte> file, const std::string& file_name);

}  // namespace ckpt
