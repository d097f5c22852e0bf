"""Catalogue: bad data (image folders, manifests, image files), refused by `soxai run` before the data stage writes."""

import os

import pytest
from _catalogue import (
    NO_STAGE_OUTPUT,
    Case,
    folder_config,
    image_folder,
    manifest_config,
    manifest_files,
    params,
    png,
    run_args,
    write,
)


def _folder(mutate, extra: str = ""):
    """An image folder (3 classes; train 6, val 2, test 2 per class) changed by ``mutate(root)``, run through soxai."""

    def args(ctx):
        root = image_folder(ctx.tmp / "images")
        mutate(root)
        return run_args(folder_config(ctx, root, extra), ctx)

    return args


def _manifest(rows=None, mutate=None, name: str = "samples.csv", extra: str = ""):
    def args(ctx):
        path = manifest_files(ctx.tmp / "data", rows, name=name)
        if mutate is not None:
            mutate(path)
        return run_args(manifest_config(ctx, path, extra), ctx)

    return args


def _rows(**changes):
    """The default manifest rows with some changed: {index: (path, label, split)}."""
    rows = [(f"img/{s}-{k}-{i}.png", k, s) for s, n in (("train", 6), ("val", 2), ("test", 2))
            for k in range(3) for i in range(n)]
    for i, row in changes.items():
        rows[int(i.lstrip("r"))] = row
    return rows


def _remove(rel):
    return lambda root: os.remove(root / rel)


def _rmtree(rel):
    import shutil

    return lambda root: shutil.rmtree(root / rel)


def _bomb(path):
    """A PNG whose header claims 30000x30000 pixels, with no pixel data to speak of."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    write(path, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
          + chunk(b"IEND", b""))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _symlink_out(root):
    outside = png(root.parent / "outside" / "x.png")
    os.symlink(outside, root / "train" / "a" / "link.png")


def _non_utf8_name(root):
    png(root / "train" / "a" / os.fsdecode(b"caf\xe9.png"))


def _manifest_edit(text_from, text_to):
    def mutate(path):
        path.write_text(path.read_text().replace(text_from, text_to))

    return mutate


def _manifest_bytes(data: bytes):
    def mutate(path):
        path.write_bytes(data)

    return mutate


FOLDER = [
    Case("folder-root-missing", lambda ctx: run_args(folder_config(ctx, ctx.tmp / "nope"), ctx),
         ("data.root", "nope", "is not a folder")),
    Case("folder-root-is-a-file", lambda ctx: run_args(folder_config(ctx, write(ctx.tmp / "f.png", "x")), ctx),
         ("f.png", "is not a folder")),
    Case("folder-no-train", _folder(_rmtree("train")), ("train",)),
    Case("folder-no-test", _folder(_rmtree("test")), ("test",)),
    Case("folder-empty-class", _folder(lambda r: [os.remove(p) for p in (r / "train" / "b").iterdir()]),
         ("train/b",)),
    Case("folder-class-only-in-test", _folder(lambda r: png(r / "test" / "zebra" / "0.png")), ("zebra",)),
    Case("folder-not-an-image", _folder(lambda r: write(r / "train" / "a" / "0.png", "not a png")), ("0.png",)),
    Case("folder-truncated-image", _folder(lambda r: _truncate(r / "train" / "a" / "1.png")), ("1.png",)),
    Case("folder-empty-file", _folder(lambda r: write(r / "train" / "c" / "2.png", b"")), ("2.png",)),
    Case("folder-16-bit-image", _folder(lambda r: png(r / "train" / "a" / "3.png", mode="I;16")), ("3.png",)),
    Case("folder-decompression-bomb", _folder(lambda r: _bomb(r / "train" / "b" / "0.png")), ("0.png", "pixels")),
    Case("folder-symlink-out-of-root", _folder(_symlink_out), ("link.png", "outside")),
    Case("folder-mixed-sizes", _folder(lambda r: png(r / "train" / "a" / "0.png", size=24)), ("data.resize",)),
    Case("folder-crop-larger-than-images", _folder(lambda r: None, "data: {crop: 64}"), ("data.crop",)),
    Case("folder-non-utf8-file-name", _folder(_non_utf8_name), ("train/a/caf\\xe9.png", "not UTF-8", "rename")),
]

MANIFEST = [
    Case("manifest-missing-file", lambda ctx: run_args(manifest_config(ctx, ctx.tmp / "nope.csv"), ctx),
         ("nope.csv",)),
    Case("manifest-unknown-suffix", _manifest(name="samples.txt"), ("samples.txt", ".csv")),
    Case("manifest-missing-column", _manifest(mutate=_manifest_edit("path,label,split", "file,label,split")),
         ("path",)),
    Case("manifest-empty", _manifest(mutate=_manifest_bytes(b"path,label,split\n")), ("samples.csv",)),
    Case("manifest-zero-bytes", _manifest(mutate=_manifest_bytes(b"")), ("samples.csv",)),
    Case("manifest-not-utf8", _manifest(mutate=_manifest_bytes(b"path,label,split\nimg/\xff.png,0,train\n")),
         ("samples.csv", "UTF-8")),
    Case("manifest-missing-image", _manifest(_rows(r0=("img/gone.png", 0, "train")),
                                             mutate=lambda p: os.remove(p.parent / "img/gone.png")), ("gone.png",)),
    Case("manifest-path-escapes", _manifest(_rows(r0=("../outside.png", 0, "train"))), ("../outside.png",)),
    Case("manifest-absolute-path", _manifest(_rows(r0=("/etc/hostname", 0, "train"))), ("/etc/hostname",)),
    Case("manifest-nan-label", _manifest(_rows(r3=("img/train-0-3.png", "NaN", "train"))), ("NaN",)),
    Case("manifest-empty-label", _manifest(mutate=_manifest_edit("img/train-0-3.png,0,", "img/train-0-3.png,,")),
         ("label",)),
    Case("manifest-label-gap", _manifest([(p, 2 * k, s) for p, k, s in _rows()]), ("label",)),
    Case("manifest-negative-label", _manifest(_rows(r0=("img/train-0-0.png", -1, "train"))), ("label",)),
    Case("manifest-no-test-split", _manifest([r for r in _rows() if r[2] != "test"]), ("test",)),
    Case("manifest-no-train-split", _manifest([r for r in _rows() if r[2] != "train"]), ("train",)),
    Case("manifest-class-missing-in-train", _manifest([r for r in _rows() if not (r[2] == "train" and r[1] == 2)]),
         ("train",)),
    Case("manifest-duplicate-sample-id", _manifest(mutate=lambda p: p.write_text(
        p.read_text().replace("path,label,split", "path,label,split,sample_id", 1).replace(",train\n", ",train,x\n"))),
        ("sample_id", "x")),
    Case("manifest-empty-split-name", _manifest(mutate=_manifest_edit("img/train-0-3.png,0,train",
                                                                      "img/train-0-3.png,0,")), ("split",)),
    Case("manifest-not-an-image", _manifest(mutate=lambda p: write(p.parent / "img/train-1-0.png", "text")),
         ("train-1-0.png",)),
    Case("manifest-decompression-bomb", _manifest(mutate=lambda p: _bomb(p.parent / "img/test-2-1.png")),
         ("test-2-1.png",)),
    Case("manifest-image-sizes-differ", _manifest(mutate=lambda p: png(p.parent / "img/val-0-0.png", size=20)),
         ("val-0-0.png",)),
    Case("manifest-damaged-parquet", _manifest(name="samples.parquet", mutate=_truncate), ("samples.parquet",)),
    Case("manifest-symlink-out", _manifest(mutate=lambda p: (os.remove(p.parent / "img/train-0-0.png"), os.symlink(
        png(p.parent.parent / "elsewhere.png"), p.parent / "img/train-0-0.png"))), ("train-0-0.png",)),
]

for _case in FOLDER + MANIFEST:
    object.__setattr__(_case, "leaves", NO_STAGE_OUTPUT)
    object.__setattr__(_case, "flow", True)


@pytest.mark.parametrize("case", params(FOLDER))
def test_image_folder__bad_data_refused_before_the_data_stage_writes(case, check_case):
    check_case(case)


@pytest.mark.parametrize("case", params(MANIFEST))
def test_manifest__bad_data_refused_before_the_data_stage_writes(case, check_case):
    check_case(case)
