"""safetensors, written and read by hand (no dependency beyond torch).

The format: an unsigned 64-bit little-endian header length N, then N bytes of UTF-8 JSON (padded with spaces so
that N is a multiple of 8), then the raw little-endian tensor data. The JSON maps each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the data section, contiguous, in file order)
plus an optional ``"__metadata__"`` object of strings. This is exactly what ``safetensors.torch.save_file``
writes; it is written here by hand so that a trainer needs nothing beyond torch.
"""

import json
import struct
import sys

import torch

# torch dtype -> safetensors dtype name, for the dtypes `./rlvec parity` reads.
DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.bfloat16: "BF16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}

_TORCH_DTYPES = {name: dtype for dtype, name in DTYPE_NAMES.items()}


def storable(t):
    """A CPU, contiguous, detached copy of ``t`` in a dtype parity reads.

    float16 becomes float32 (exact) and the other integer widths int64 (exact): parity's reader has no F16, I8,
    I16 or U16.
    """
    t = t.detach()
    if t.dtype == torch.float16:
        t = t.to(torch.float32)
    elif t.dtype in (torch.int8, torch.int16) or (t.dtype not in DTYPE_NAMES and not t.is_floating_point()
                                                    and not t.is_complex()):
        t = t.to(torch.int64)
    elif t.dtype not in DTYPE_NAMES:
        raise TypeError(f"cannot store a {t.dtype} tensor (parity reads F32, F64, BF16, I32, I64, U8, BOOL)")
    return t.to("cpu").contiguous()


def _raw_bytes(t):
    """The tensor's bytes in little-endian order."""
    if t.numel() == 0:
        return b""
    flat = t.reshape(-1)
    if t.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    elif t.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    data = flat.numpy().tobytes() if _has_numpy() else bytes(_as_byte_list(flat))
    if sys.byteorder != "little" and t.element_size() > 1:
        raise RuntimeError("big-endian hosts are not supported")
    return data


def _as_byte_list(flat):
    """Bytes of a 1-D tensor without numpy: reinterpret as uint8 through torch."""
    return flat.view(torch.uint8).tolist()


_NUMPY = None


def _has_numpy():
    global _NUMPY
    if _NUMPY is None:
        try:
            import numpy  # noqa: F401
            _NUMPY = True
        except ImportError:
            _NUMPY = False
    return _NUMPY


def encode(tensors, metadata):
    """The bytes of a safetensors file.

    :param tensors: ordered ``name -> tensor`` (already :func:`storable`); written in this order.
    :param metadata: ``str -> str``.
    """
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata must map strings to strings, got {k!r}: {type(v).__name__}")
        header["__metadata__"] = dict(metadata)
    chunks = []
    offset = 0
    for name, t in tensors.items():
        data = _raw_bytes(t)
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save(path, tensors, metadata):
    """Writes :func:`encode` to ``path``.

    Always by hand, even where the ``safetensors`` package is installed: its ``save_file`` reorders tensors by
    dtype, and a dump keeps the order of its ``inputs`` / ``outputs`` metadata (the files are byte-compatible
    either way; ``safetensors.safe_open`` reads them).
    """
    with open(path, "wb") as f:
        f.write(encode(tensors, metadata))


def load(path):
    """Reads a safetensors file: ``(ordered name -> tensor, metadata)``. For tests and tools."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        dtype = _TORCH_DTYPES[info["dtype"]]
        buf = bytearray(data[begin:end])
        if dtype == torch.bfloat16:
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16) if buf else torch.empty(0, dtype=dtype)
        elif dtype == torch.bool:
            t = torch.frombuffer(buf, dtype=torch.uint8).to(torch.bool) if buf else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out, metadata
