"""Weights files without pickle: the safetensors layout, read and written with torch alone.

A file is an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
byte range (plus a ``__metadata__`` mapping of strings), then the raw little-endian tensor bytes —
the format of the `safetensors` package (https://github.com/huggingface/safetensors), so
``safetensors.torch.load_file(path)`` reads soxai's checkpoints too. Loading one runs no code.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from soxai.errors import ConfigError

if TYPE_CHECKING:
    import torch

_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
_MAX_HEADER = 100_000_000


def _torch_dtypes() -> dict[str, torch.dtype]:
    import torch

    return {code: getattr(torch, name) for code, name in _DTYPES.items()}


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``state`` (tensors are copied to the CPU, contiguous)."""
    import torch

    codes = {v: k for k, v in _torch_dtypes().items()}
    header: dict[str, object] = {"__metadata__": dict(metadata or {})}
    blobs, offset = [], 0
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        if tensor.dtype not in codes:
            raise ValueError(f"cannot store tensor {name!r} of dtype {tensor.dtype}")
        data = tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": codes[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the tensor data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file (8-byte header length, then a JSON object)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a malformed file raises ConfigError naming it."""
    import torch

    data = Path(path).read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        if n > min(_MAX_HEADER, len(data) - 8):
            raise ValueError(f"header length {n} exceeds the file")
        header = json.loads(data[8 : 8 + n])
        metadata = header.pop("__metadata__", {}) or {}
        dtypes = _torch_dtypes()
        body = memoryview(data)[8 + n :]
        state = {}
        for name, spec in header.items():
            start, stop = spec["data_offsets"]
            dtype = dtypes[spec["dtype"]]
            if not 0 <= start <= stop <= len(body):
                raise ValueError(f"tensor {name!r} lies outside the file")
            chunk = bytearray(body[start:stop])
            flat = torch.frombuffer(chunk, dtype=torch.uint8).view(dtype) if chunk else torch.empty(0, dtype=dtype)
            state[name] = flat.reshape(spec["shape"]).clone()
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"{path} is not a valid safetensors weights file ({exc})") from None
    return state, {str(k): str(v) for k, v in metadata.items()}


def read_checkpoint(path: Path) -> dict[str, object]:
    """A checkpoint soxai wrote, as ``{"state_dict": {name: tensor}, "meta": {...}}``."""
    state, metadata = read_safetensors(path)
    return {"state_dict": state, "meta": json.loads(metadata.get("soxai", "{}"))}
