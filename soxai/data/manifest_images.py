"""A manifest's images decoded from their files: into an array (the eager read) or when read (the data stage's
block-by-block write). soxai.data.manifest_source checks the manifest and the files' headers first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from soxai.data.images import describe_error, open_image, unreadable_errors


def decode_into(out: np.ndarray, paths: list[Path], raw: list[str], mode: str, start: int = 0
                 ) -> tuple[list[int], list[str]]:
    """Decode ``paths`` into ``out`` (len(paths), C, H, W) float32 in [0, 1]; returns the manifest rows (counted
    from ``start``) of the files that could not be read, and why."""
    bad, why = [], []
    for i, path in enumerate(paths):
        try:
            with open_image(path) as im:
                arr = np.asarray(im.convert(mode), dtype=np.float32)
        except unreadable_errors() as exc:
            bad.append(start + i)
            why.append(f"{raw[start + i]!r}: {describe_error(exc)}")
            continue
        out[i] = arr[None] if out.shape[1] == 1 else arr.transpose(2, 0, 1)
    out /= 255.0
    return bad, why


class ManifestImages:
    """A manifest's images, of shape (N, C, H, W), float32 in [0, 1], decoded a block at a time (:meth:`blocks`).

    The data stage writes them to ``data/images.npy`` as they are decoded, so that a manifest of millions of
    images never sits in memory whole (decoded at once, 1M RGB images of 64x64 take 49 GB). The file is the one
    writing the decoded array at once gives, byte for byte.
    """

    ndim = 4

    def __init__(self, paths: list[Path], raw: list[str], mode: str, size: tuple[int, int],
                 corrupt: Callable[[list[int], list[str]], Exception], block_bytes: int = 64 << 20) -> None:
        self.paths, self.raw, self.mode, self.corrupt = paths, raw, mode, corrupt
        width, height = size
        self.shape = (len(paths), 1 if mode == "L" else 3, height, width)
        self.block_rows = max(1, block_bytes // (4 * int(np.prod(self.shape[1:]))))

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, list[int], list[str]]:
        out = np.empty((stop - start, *self.shape[1:]), dtype=np.float32)
        bad, why = decode_into(out, self.paths[start:stop], self.raw, self.mode, start)
        return out, bad, why

    def blocks(self):
        """The images in order, ``block_rows`` at a time. Every file is read before an unreadable one is
        reported (one DataError naming them all, raised after the last block), as the eager read reports them."""
        bad, why = [], []
        for start in range(0, len(self), self.block_rows):
            out, b, w = self._read(start, min(start + self.block_rows, len(self)))
            bad += b
            why += w
            if not bad:
                yield out
        if bad:
            raise self.corrupt(bad, why)
