"""A GGUF reader in numpy, independent of ckptkit, for the tests of `ckptkit export-gguf`.

Written from the format's specification (ggml's docs/gguf.md: GGUF v3, little-endian) and the
block layouts of ggml's F32, F16, BF16 and Q8_0 types. Reads the whole file: header, every
key/value (all 13 value types, nested arrays included), every tensor's info, the aligned data
section, and decodes each tensor to float32 in torch order (the reverse of GGUF's ne[]).
Anything out of bounds or inconsistent raises ValueError.
"""
import struct

import numpy as np

GGUF_MAGIC = b"GGUF"
# value types: u8 i8 u16 i16 u32 i32 f32 bool string array u64 i64 f64
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
# ggml types: name, elements per block, bytes per block
GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 8: ("Q8_0", 32, 34), 30: ("BF16", 1, 2)}


class _Cursor:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"read of {n} bytes at {self.pos} past the end ({len(self.data)})")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.unpack("<Q")
        return self.take(n).decode("utf-8")

    def value(self, vtype):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            etype, n = self.unpack("<I"), self.unpack("<Q")
            return [self.value(etype) for _ in range(n)]
        raise ValueError(f"unknown value type {vtype}")


def _decode(ttype, raw, count):
    name = GGML_TYPES[ttype][0]
    if name == "F32":
        return np.frombuffer(raw, "<f4").astype(np.float32)
    if name == "F16":
        return np.frombuffer(raw, "<f2").astype(np.float32)
    if name == "BF16":
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "i1", 32)]))
    return (blocks["d"].astype(np.float32)[:, None] * blocks["qs"].astype(np.float32)).reshape(-1)[:count]


def read_gguf(path):
    """{'version', 'kv' (key -> value), 'kv_types' (key -> value type), 'tensors' (name ->
    float32 array in torch order), 'types' (name -> ggml type name), 'ne' (name -> ne list),
    'alignment', 'data_offset'}."""
    with open(path, "rb") as f:
        data = f.read()
    c = _Cursor(data)
    if c.take(4) != GGUF_MAGIC:
        raise ValueError("not a GGUF file (magic)")
    version = c.unpack("<I")
    if version != 3:
        raise ValueError(f"GGUF version {version}, expected 3")
    n_tensors, n_kv = c.unpack("<Q"), c.unpack("<Q")
    kv, kv_types = {}, {}
    for _ in range(n_kv):
        key = c.string()
        vtype = c.unpack("<I")
        if key in kv:
            raise ValueError(f"key {key} twice")
        kv[key], kv_types[key] = c.value(vtype), vtype
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        n_dims = c.unpack("<I")
        if not 1 <= n_dims <= 4:
            raise ValueError(f"{name}: {n_dims} dimensions")
        ne = [c.unpack("<Q") for _ in range(n_dims)]
        ttype, offset = c.unpack("<I"), c.unpack("<Q")
        if ttype not in GGML_TYPES:
            raise ValueError(f"{name}: ggml type {ttype} not read here")
        infos.append((name, ne, ttype, offset))
    alignment = kv.get("general.alignment", 32)
    data_offset = (c.pos + alignment - 1) // alignment * alignment
    if any(data[c.pos:data_offset]):
        raise ValueError("non-zero padding before the data section")
    tensors, types, nes = {}, {}, {}
    end = data_offset
    for name, ne, ttype, offset in infos:
        _, per_block, block_bytes = GGML_TYPES[ttype]
        count = int(np.prod(ne))
        if ne[0] % per_block:
            raise ValueError(f"{name}: ne[0] = {ne[0]} is not a multiple of the block {per_block}")
        nbytes = count // per_block * block_bytes
        if offset % alignment:
            raise ValueError(f"{name}: offset {offset} not aligned to {alignment}")
        start = data_offset + offset
        if start + nbytes > len(data):
            raise ValueError(f"{name}: data past the end of the file")
        if name in tensors:
            raise ValueError(f"tensor {name} twice")
        tensors[name] = _decode(ttype, data[start:start + nbytes], count).reshape(list(reversed(ne)))
        types[name], nes[name] = GGML_TYPES[ttype][0], ne
        end = max(end, start + nbytes)
    if end > len(data):
        raise ValueError("tensor data past the end of the file")
    return {"version": version, "kv": kv, "kv_types": kv_types, "tensors": tensors, "types": types,
            "ne": nes, "alignment": alignment, "data_offset": data_offset, "size": len(data),
            "data_end": end}
