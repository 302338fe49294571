"""safetensors reading and writing by hand (json + numpy; no safetensors package), and Hugging Face
checkpoint-directory loading (model.safetensors, or model.safetensors.index.json + shards).

Format: 8-byte little-endian u64 N, then N bytes of JSON header (padded with spaces to a multiple
of 8), then the byte buffer. Header: {"name": {"dtype": "F32", "shape": [..], "data_offsets":
[begin, end]}, ..., "__metadata__": {str: str}}; offsets are relative to the buffer start and the
tensors tile the buffer contiguously (no holes, no overlap). Tensors are row-major little-endian.
"""
import json
import os
import struct

import numpy as np

DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
TORCH_DTYPE_NAME = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def to_bf16_bits(a):
    """float array -> uint16 bfloat16 bit patterns, rounding float32 to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(u):
    return (u.astype(np.uint32) << 16).view(np.float32)


def encode(a, dtype):
    """Bytes of array a stored as safetensors dtype (F64, F32, F16, BF16)."""
    if dtype == "BF16":
        return to_bf16_bits(a).astype("<u2").tobytes()
    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype}")
    return np.ascontiguousarray(a).astype(DTYPES[dtype]).tobytes()


def quantize(a, dtype):
    """The float64 values a reader gets back after storing a as dtype."""
    if dtype == "BF16":
        return from_bf16_bits(to_bf16_bits(a)).astype(np.float64).reshape(np.shape(a))
    return np.asarray(a).astype(DTYPES[dtype]).astype(np.float64)


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """tensors: dict name -> numpy array (any float dtype), all stored as `dtype`."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        raw = encode(a, dtype)
        header[name] = {"dtype": dtype, "shape": [int(s) for s in a.shape], "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return offset


def read_safetensors(path):
    """dict name -> float64 numpy array (validated header: bounds, sizes, contiguity)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size < 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        n = struct.unpack("<Q", f.read(8))[0]
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} exceeds the file size {size}")
        header = json.loads(f.read(n))
        buf = f.read()
    out, spans = {}, []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = e["dtype"]
        if dt not in DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        b, t = e["data_offsets"]
        count = int(np.prod(e["shape"], dtype=np.int64))
        if not (0 <= b <= t <= len(buf)) or t - b != count * DTYPES[dt].itemsize:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {[b, t]} for shape {e['shape']} {dt}")
        spans.append((b, t))
        a = np.frombuffer(buf[b:t], DTYPES[dt])
        a = from_bf16_bits(a) if dt == "BF16" else a
        out[name] = a.astype(np.float64).reshape(e["shape"])
    spans.sort()
    pos = 0
    for b, t in spans:
        if b != pos:
            raise ValueError(f"{path}: tensor data not contiguous at byte {pos}")
        pos = t
    if pos != len(buf):
        raise ValueError(f"{path}: {len(buf) - pos} trailing bytes after the last tensor")
    return out


def load_checkpoint(directory):
    """(config dict, dict name -> float64 numpy array) of a Hugging Face checkpoint directory."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)  # Python's json accepts the Infinity / NaN literals HF writes
    idx = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        W = {}
        for shard in sorted(set(wm.values())):
            part = read_safetensors(os.path.join(directory, shard))
            for name in part:
                if wm.get(name) != shard:
                    raise ValueError(f"{shard}: tensor {name} is not mapped to this shard in the index")
            W.update(part)
        missing = sorted(set(wm) - set(W))
        if missing:
            raise ValueError(f"{idx}: tensors missing from their shards: {missing[:5]}")
        return cfg, W
    return cfg, read_safetensors(os.path.join(directory, "model.safetensors"))
