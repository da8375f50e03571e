"""safetensors <-> torch tensors for the PyTorch peers (no `safetensors` package on Debian 12):
load everything into memory as transformers' from_pretrained does, save in file order."""
import json
import struct

import numpy as np
import torch

DT = {"F32": (torch.float32, np.float32), "BF16": (torch.bfloat16, np.int16), "F16": (torch.float16, np.float16)}
NAME = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None)
        data = f.read()
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        tdt, ndt = DT[info["dtype"]]
        a = np.frombuffer(data, ndt, count=(e - b) // np.dtype(ndt).itemsize, offset=b).copy()
        t = torch.from_numpy(a)
        if tdt == torch.bfloat16:
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(info["shape"])
    del data
    return out, meta


def save(path, tensors, meta):
    header, off = {}, 0
    for name, t in tensors.items():
        nb = t.numel() * t.element_size()
        header[name] = {"dtype": NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + nb]}
        off += nb
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for t in tensors.values():
            t = t.contiguous()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            f.write(t.numpy().tobytes())
