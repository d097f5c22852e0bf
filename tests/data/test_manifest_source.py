import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from soxai.data.config import DataConfig
from soxai.data.manifest_source import build_manifest
from soxai.data.sources import build_dataset
from soxai.errors import DataError


def _png(path: Path, value: int = 100, size: tuple[int, int] = (6, 4), mode: str = "L") -> str:
    """Write a flat image of ``size`` (width, height); return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode in ("L", "P", "I;16") else (value,) * len(mode)
    Image.new(mode, size, color).save(path)
    return path.name


def _manifest(root: Path, rows: list[dict], name: str = "samples.csv") -> Path:
    path = root / name
    frame = pd.DataFrame(rows)
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


def _cfg(manifest: Path) -> DataConfig:
    return DataConfig(source="manifest", manifest=str(manifest))


def _basic(root: Path, n: int = 4, **extra) -> list[dict]:
    """n grey images alternating labels 0/1, the last one in 'test'."""
    rows = []
    for i in range(n):
        _png(root / "img" / f"{i}.png", value=10 * i)
        split = "test" if i == n - 1 else "train"
        rows.append({"path": f"img/{i}.png", "label": i % 2, "split": split, **extra})
    return rows


def test_build_manifest__reads_grey_images_and_defaults(tmp_path):
    manifest = _manifest(tmp_path, _basic(tmp_path))
    ds = build_manifest(_cfg(manifest))
    assert ds.images.shape == (4, 1, 4, 6) and ds.images.dtype == np.float32
    np.testing.assert_allclose(ds.images[2], 20 / 255, rtol=1e-6)
    s = ds.samples
    assert s["sample_id"].tolist() == [f"img/{i}.png" for i in range(4)]
    assert s["path"].tolist() == s["sample_id"].tolist()
    assert s["split"].tolist() == ["train", "train", "train", "test"]
    assert s["label"].dtype == np.int64 and s["label"].tolist() == [0, 1, 0, 1]
    assert s["row"].tolist() == [0, 1, 2, 3] and (s["source"] == "manifest").all()
    assert s["group"].isna().all()
    assert ds.masks is None and ds.class_names == ["0", "1"]


def test_build_manifest__string_labels_map_to_sorted_class_names(tmp_path):
    rows = _basic(tmp_path, n=4)
    for row, name in zip(rows, ["dog", "cat", "bird", "cat"], strict=True):
        row["label"] = name
    ds = build_manifest(_cfg(_manifest(tmp_path, rows)))
    assert ds.class_names == ["bird", "cat", "dog"]
    assert ds.samples["label"].tolist() == [2, 1, 0, 1]


def test_build_manifest__parquet_with_group_and_sample_id(tmp_path):
    rows = _basic(tmp_path, n=4)
    for i, row in enumerate(rows):
        row.update(sample_id=f"s{i}", group="artifact" if i == 0 else None)
    ds = build_manifest(_cfg(_manifest(tmp_path, rows, "samples.parquet")))
    assert ds.samples["sample_id"].tolist() == ["s0", "s1", "s2", "s3"]
    assert ds.samples["group"].iloc[0] == "artifact" and ds.samples["group"].iloc[1:].isna().all()


def test_build_manifest__colour_modes_become_rgb(tmp_path):
    _png(tmp_path / "a.png", mode="RGB", value=30)
    Image.new("RGBA", (6, 4), (10, 20, 30, 0)).save(tmp_path / "b.png")
    pal = Image.new("P", (6, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(tmp_path / "c.png")
    names = {"a.png": 0, "b.png": 1, "c.png": 1}
    rows = [{"path": p, "label": lab, "split": "test" if p == "c.png" else "train"} for p, lab in names.items()]
    ds = build_manifest(_cfg(_manifest(tmp_path, rows)))
    assert ds.images.shape == (3, 3, 4, 6)
    np.testing.assert_allclose(ds.images[1, :, 0, 0], np.array([10, 20, 30]) / 255, rtol=1e-6)
    np.testing.assert_allclose(ds.images[2, :, 0, 0], [1.0, 0.0, 0.0])


def test_build_manifest__masks_nonzero_is_relevant(tmp_path):
    rows = _basic(tmp_path, n=3)
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[1:3, 2:5] = 7
    Image.fromarray(mask).save(tmp_path / "m0.png")
    rows[0]["mask_path"] = "m0.png"
    rows[1]["mask_path"] = None
    rows[2]["mask_path"] = None
    ds = build_manifest(_cfg(_manifest(tmp_path, rows)))
    assert ds.masks.shape == (3, 4, 6) and ds.masks.dtype == bool
    np.testing.assert_array_equal(ds.masks[0], mask > 0)
    assert not ds.masks[1:].any()
    assert ds.samples["mask_path"].iloc[0] == "m0.png" and ds.samples["mask_path"].iloc[1:].isna().all()


def test_build_manifest__unknown_splits_are_evaluation_sets(tmp_path):
    rows = _basic(tmp_path, n=4)
    rows[3]["split"] = "hospital_b"
    ds = build_manifest(_cfg(_manifest(tmp_path, rows)))
    assert ds.splits == ["train", "hospital_b"]


def test_build_dataset__relative_manifest_resolves_against_base_dir(tmp_path):
    (tmp_path / "data").mkdir()
    _manifest(tmp_path / "data", _basic(tmp_path / "data"))
    ds = build_dataset(DataConfig(source="manifest", manifest="data/samples.csv"), seed=0, base_dir=tmp_path)
    assert len(ds.samples) == 4


# --- every problem is a DataError naming the rows, what was expected and the fix ---


def test_build_manifest__missing_file__raises(tmp_path):
    with pytest.raises(DataError, match="does not exist; set data.manifest"):
        build_manifest(_cfg(tmp_path / "nope.csv"))


def test_build_manifest__unknown_suffix__raises(tmp_path):
    (tmp_path / "samples.txt").write_text("path,label,split\n")
    with pytest.raises(DataError, match=r"expected \.csv or \.parquet"):
        build_manifest(_cfg(tmp_path / "samples.txt"))


def test_build_manifest__missing_columns__lists_found_columns(tmp_path):
    manifest = _manifest(tmp_path, [{"file": "a.png", "label": 0}])
    with pytest.raises(DataError, match=r"lacks the columns \['path', 'split'\]; found \['file', 'label'\]"):
        build_manifest(_cfg(manifest))


def test_build_manifest__dotdot_path_escaping__raises(tmp_path):
    root = tmp_path / "data"
    rows = _basic(root)
    _png(tmp_path / "outside.png")
    rows[1]["path"] = "../outside.png"
    with pytest.raises(DataError, match=r"lead outside the manifest's folder: line 3 \('\.\./outside\.png'"):
        build_manifest(_cfg(_manifest(root, rows)))


def test_build_manifest__absolute_path__raises(tmp_path):
    rows = _basic(tmp_path)
    rows[0]["path"] = str(tmp_path / "img" / "0.png")
    with pytest.raises(DataError, match=r"absolute paths: line 2 .*relative to the manifest's folder"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__symlink_pointing_outside__raises(tmp_path):
    root = tmp_path / "data"
    rows = _basic(root)
    _png(tmp_path / "secret.png")
    try:
        os.symlink(tmp_path / "secret.png", root / "link.png")
    except OSError:
        pytest.skip("symlinks not supported here")
    rows[0]["path"] = "link.png"
    with pytest.raises(DataError, match=r"lead outside.*line 2 \('link\.png' -> .*secret\.png\)"):
        build_manifest(_cfg(_manifest(root, rows)))


def test_build_manifest__a_link_loop_is_a_missing_file_not_a_traceback(tmp_path):
    """``Path.resolve()`` raised RuntimeError('Symlink loop') out of the pre-check and the data stage's fingerprint."""
    from soxai.data.manifest_source import check_manifest, manifest_hash

    rows = _basic(tmp_path)
    os.symlink(tmp_path / "loop_b.png", tmp_path / "loop_a.png")
    os.symlink(tmp_path / "loop_a.png", tmp_path / "loop_b.png")
    rows[0]["path"] = "loop_a.png"
    manifest = _manifest(tmp_path, rows)
    assert len(manifest_hash(manifest)) == 16
    for check in (check_manifest, build_manifest):
        with pytest.raises(DataError, match=r"do not exist: line 2 \('loop_a\.png'\)"):
            check(_cfg(manifest))


def test_build_manifest__missing_images__names_up_to_five_and_count(tmp_path):
    rows = _basic(tmp_path, n=4) + [{"path": f"gone{i}.png", "label": 0, "split": "train"} for i in range(7)]
    with pytest.raises(DataError) as info:
        build_manifest(_cfg(_manifest(tmp_path, rows)))
    msg = str(info.value)
    assert "do not exist" in msg and "line 6 ('gone0.png')" in msg and "line 10 ('gone4.png')" in msg
    assert "gone5" not in msg and "(7 rows in all)" in msg and "fix the paths or drop those rows" in msg


def test_build_manifest__not_an_image__raises(tmp_path):
    rows = _basic(tmp_path)
    (tmp_path / "img" / "1.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match=r"cannot be opened as images: line 3 \('img/1\.png'"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__truncated_image__raises(tmp_path):
    rows = _basic(tmp_path)
    noisy = np.random.default_rng(0).integers(0, 255, size=(4, 6), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "img" / "2.png")
    data = (tmp_path / "img" / "2.png").read_bytes()
    (tmp_path / "img" / "2.png").write_bytes(data[: len(data) - 30])
    with pytest.raises(DataError, match=r"line 4 \('img/2\.png'"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__mixed_sizes__names_both_sizes_and_suggests_resizing(tmp_path):
    rows = _basic(tmp_path)
    _png(tmp_path / "img" / "3.png", size=(8, 8))
    with pytest.raises(DataError, match=r"most are 6x4 .* line 5 \('img/3\.png'\) is 8x8.*resize all images"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__mixed_grey_and_colour__raises(tmp_path):
    rows = _basic(tmp_path)
    _png(tmp_path / "img" / "2.png", mode="RGB")
    expected = r"mix grey and colour: line 2 .* is L like most, but line 4 .* is RGB.*convert\('L'\)"
    with pytest.raises(DataError, match=expected):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__sixteen_bit_image__refused(tmp_path):
    rows = _basic(tmp_path)
    Image.fromarray(np.full((4, 6), 1000, dtype=np.uint16)).save(tmp_path / "img" / "0.png")
    with pytest.raises(DataError, match=r"unsupported mode: line 2 .*convert them to 8-bit"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


@pytest.mark.parametrize("fmt", ["samples.csv", "samples.parquet"])
def test_build_manifest__empty_labels__names_rows(tmp_path, fmt):
    rows = _basic(tmp_path)
    rows[0]["label"] = None
    rows[2]["label"] = None
    where = "line 2 (empty), line 4 (empty)" if fmt.endswith("csv") else "row 0 (empty), row 2 (empty)"
    with pytest.raises(DataError, match=rf"label is empty: {re.escape(where)}.*fill in label"):
        build_manifest(_cfg(_manifest(tmp_path, rows, fmt)))


def test_build_manifest__fractional_or_negative_labels__raise(tmp_path):
    rows = _basic(tmp_path)
    rows[1]["label"] = 1.5
    with pytest.raises(DataError, match=r"not whole numbers: row 1 \(1\.5\)"):
        build_manifest(_cfg(_manifest(tmp_path, rows, "samples.parquet")))
    rows[1]["label"] = -1
    with pytest.raises(DataError, match=r"negative: line 3 \(-1\).*renumber"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__duplicate_sample_ids__raise(tmp_path):
    rows = _basic(tmp_path)
    for row, sid in zip(rows, ["a", "b", "a", "c"], strict=True):
        row["sample_id"] = sid
    with pytest.raises(DataError, match=r"repeat an earlier row: line 4 \('a', first on line 2\)"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__duplicate_paths_without_ids__raise(tmp_path):
    rows = _basic(tmp_path)
    rows[3]["path"] = rows[0]["path"]
    with pytest.raises(DataError, match=r"repeat an earlier row: line 5 \('img/0\.png'"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__no_train_split__raises(tmp_path):
    rows = _basic(tmp_path)
    for row in rows:
        row["split"] = "val"
    with pytest.raises(DataError, match=r"no rows with split 'train' \(found splits \['val'\]\)"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__empty_split__names_rows(tmp_path):
    rows = _basic(tmp_path)
    rows[1]["split"] = " "
    with pytest.raises(DataError, match=r"split is empty: line 3"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__mask_of_wrong_size__raises(tmp_path):
    rows = _basic(tmp_path)
    _png(tmp_path / "m.png", size=(3, 3))
    rows[1]["mask_path"] = "m.png"
    with pytest.raises(DataError, match=r"masks differ in size .*line 3 \('m\.png' is 3x3\).*resize"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_build_manifest__mask_path_escaping__raises(tmp_path):
    root = tmp_path / "data"
    rows = _basic(root)
    _png(tmp_path / "m.png")
    rows[2]["mask_path"] = "../m.png"
    with pytest.raises(DataError, match=r"mask_path values lead outside.*line 4"):
        build_manifest(_cfg(_manifest(root, rows)))


def test_build_manifest__eval_class_missing_from_train__raises(tmp_path):
    rows = _basic(tmp_path)
    rows[3]["label"] = 2
    with pytest.raises(DataError, match=r"never occur in 'train' \(split 'test': 1 of class '2'\)"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_run_data__bad_row_leaves_no_data_output(tmp_path):
    """A manifest row naming a missing image fails the data stage with a DataError; data/ then holds neither
    the samples table, the images nor a stage.json — also where an earlier, good manifest had filled it."""
    from soxai.config import load_config
    from soxai.data.runner import run_data
    from soxai.runs import init_run

    rows = _basic(tmp_path / "files")
    manifest = _manifest(tmp_path / "files", rows)
    cfg = load_config(None, ["data.source=manifest", f"data.manifest={manifest}"])
    fresh, reused = init_run(cfg, tmp_path / "fresh"), init_run(cfg, tmp_path / "reused")
    run_data(cfg, reused)
    assert reused.samples.is_file() and reused.images.is_file() and reused.stage_json("data").is_file()

    rows[1]["path"] = "img/gone.png"  # a new manifest file: the data stage's fingerprint changes, it reruns
    _manifest(tmp_path / "files", rows)
    for run in (fresh, reused):
        with pytest.raises(DataError, match=r"do not exist: line 3 \('img/gone\.png'\)"):
            run_data(cfg, run)
        left = [p for p in (run.samples, run.images, run.stage_json("data")) if p.exists()]
        assert not left, f"{run.root.name}: a failed data stage left {[p.name for p in left]}"


def test_run_data__edited_image_reruns_the_stage(tmp_path):
    """The data stage's fingerprint covers the files a manifest names, not only the manifest: an image
    edited in place (same manifest bytes) is read again, and an untouched rerun is reused."""
    from soxai.config import load_config
    from soxai.data.manifest_source import manifest_hash
    from soxai.data.runner import run_data
    from soxai.runs import init_run

    rows = _basic(tmp_path / "files")
    manifest = _manifest(tmp_path / "files", rows)
    cfg = load_config(None, ["data.source=manifest", f"data.manifest={manifest}"])
    run = init_run(cfg, tmp_path / "run")
    first = run_data(cfg, run)
    assert not first.reused and run_data(cfg, run).reused
    before = manifest_hash(manifest)

    _png(tmp_path / "files" / "img" / "1.png", value=200)  # same name, new pixels
    stat = (tmp_path / "files" / "img" / "1.png").stat()
    os.utime(tmp_path / "files" / "img" / "1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert manifest_hash(manifest) != before
    again = run_data(cfg, run)
    assert not again.reused
    from soxai.run_dir import read_npy

    np.testing.assert_allclose(read_npy(run.images)[1], 200 / 255, rtol=1e-6)


def test_manifest_hash__missing_and_escaping_files_do_not_raise(tmp_path):
    """The hash never raises on bad input (build_manifest reports it): a missing manifest, a missing image, a
    path that climbs out of the folder; a missing manifest and one that names a missing file differ."""
    from soxai.data.manifest_source import manifest_hash

    assert manifest_hash(tmp_path / "nope.csv") == "missing"
    rows = _basic(tmp_path)
    rows[0]["path"] = "img/gone.png"
    rows[1]["path"] = "../outside.png"
    manifest = _manifest(tmp_path, rows)
    h = manifest_hash(manifest)
    assert len(h) == 16 and h != "missing"
    _png(tmp_path / "img" / "gone.png")
    assert manifest_hash(manifest) != h


@pytest.mark.parametrize("label", ["NaN", "nan", "NA", "None", "null"])
def test_build_manifest__missing_label_text__names_rows(tmp_path, label):
    rows = _basic(tmp_path)
    rows[1]["label"] = label
    with pytest.raises(DataError) as info:
        build_manifest(_cfg(_manifest(tmp_path, rows)))
    msg = str(info.value)
    assert "labels are missing" in msg and f"line 3 ('{label}')" in msg and "fill in the labels" in msg


def test_build_manifest__label_gap__names_the_empty_class(tmp_path):
    rows = _basic(tmp_path, n=6)
    for r in rows:
        r["label"] = 2 if r["label"] == 1 else 0
    with pytest.raises(DataError) as info:
        build_manifest(_cfg(_manifest(tmp_path, rows)))
    msg = str(info.value)
    assert "without gaps" in msg and "found [0, 2]" in msg and "class(es) [1]" in msg and "Renumber" in msg
    assert "samples.csv" in msg


def test_build_manifest__no_test_split__names_splits_and_fix(tmp_path):
    rows = _basic(tmp_path, n=5)
    for r in rows:
        r["split"] = "val" if r["split"] == "test" else r["split"]
    with pytest.raises(DataError) as info:
        build_manifest(_cfg(_manifest(tmp_path, rows)))
    msg = str(info.value)
    assert "no evaluation split" in msg and "['train', 'val']" in msg and "split=test" in msg


@pytest.mark.parametrize("side", [30000, 10000])
def test_build_manifest__decompression_bomb_header__names_the_file(tmp_path, png_header_only, side):
    # 30000^2 is over twice PIL's limit (an error); 10000^2 between one and two times (only a warning)
    rows = _basic(tmp_path)
    png_header_only(tmp_path / "bomb.png", side, side)
    rows[0]["path"] = "bomb.png"
    with pytest.raises(DataError) as info:
        build_manifest(_cfg(_manifest(tmp_path, rows)))
    msg = str(info.value)
    assert "cannot be opened as images" in msg and "line 2 ('bomb.png'" in msg and "safety limit" in msg


def test_build_manifest__decompression_bomb_mask__names_the_file(tmp_path, png_header_only):
    rows = _basic(tmp_path)
    png_header_only(tmp_path / "bomb.png", 30000, 30000)
    rows[0]["mask_path"] = "bomb.png"
    with pytest.raises(DataError, match=r"mask_path files cannot be read.*line 2 \('bomb.png': .*safety limit"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))


def test_run_data__a_manifest_is_decoded_and_written_a_block_at_a_time_with_the_same_bytes(tmp_path, monkeypatch):
    """The data stage never holds a manifest's images whole: it decodes and writes them in blocks, and the file
    is the one the eager read gives, byte for byte."""
    from soxai.config import load_config
    from soxai.data import manifest_source
    from soxai.data.runner import run_data
    from soxai.run_dir import write_npy
    from soxai.runs import init_run

    rows = _basic(tmp_path / "files", n=7)
    manifest = _manifest(tmp_path / "files", rows)
    cfg = load_config(None, ["data.source=manifest", f"data.manifest={manifest}"])
    monkeypatch.setattr(manifest_source.ManifestImages.__init__, "__defaults__", (2 * 4 * 6 * 4,))  # 2 per block
    sizes = []
    real = manifest_source.ManifestImages._read
    monkeypatch.setattr(manifest_source.ManifestImages, "_read",
                        lambda self, start, stop: sizes.append(stop - start) or real(self, start, stop))
    run = init_run(cfg, tmp_path / "run")
    run_data(cfg, run)
    assert sizes == [2, 2, 2, 1]
    eager = write_npy(tmp_path / "eager.npy", build_manifest(_cfg(manifest)).images)
    assert run.images.read_bytes() == eager.read_bytes()


def test_run_data__unreadable_files_in_different_blocks_are_named_together_and_no_images_file_is_left(
        tmp_path, monkeypatch):
    from soxai.config import load_config
    from soxai.data import manifest_source
    from soxai.data.runner import run_data
    from soxai.runs import init_run

    rows = _basic(tmp_path / "files", n=7)
    noisy = np.random.default_rng(0).integers(0, 255, size=(4, 6), dtype=np.uint8)
    for i in (1, 5):  # headers whole, pixels cut: found only when decoded, in the first block and the third
        Image.fromarray(noisy).save(tmp_path / "files" / "img" / f"{i}.png")
        data = (tmp_path / "files" / "img" / f"{i}.png").read_bytes()
        (tmp_path / "files" / "img" / f"{i}.png").write_bytes(data[: len(data) - 30])
    manifest = _manifest(tmp_path / "files", rows)
    cfg = load_config(None, ["data.source=manifest", f"data.manifest={manifest}"])
    monkeypatch.setattr(manifest_source.ManifestImages.__init__, "__defaults__", (2 * 4 * 6 * 4,))
    run = init_run(cfg, tmp_path / "run")
    with pytest.raises(DataError, match=r"corrupt or truncated") as caught:
        run_data(cfg, run)
    assert "img/1.png" in str(caught.value) and "img/5.png" in str(caught.value)
    assert not run.images.exists() and not run.samples.exists() and not run.stage_json("data").exists()
    assert not list((run.root / "data").glob("*.tmp*"))


def test_build_manifest__names_that_differ_only_by_case_are_kept_apart_with_a_warning(tmp_path, caplog):
    import logging

    rows = _basic(tmp_path, n=6)
    names = ["coins", "Coins ", "moon", "coins", "moon", "moon"]
    splits = ["train", "train", "train", "VAL", "Train", "test"]
    rows = [{**r, "label": name, "split": split} for r, name, split in zip(rows, names, splits, strict=True)]
    with caplog.at_level(logging.WARNING, logger="soxai"):
        ds = build_manifest(_cfg(_manifest(tmp_path, rows)))
    assert ds.class_names == ["Coins", "coins", "moon"]  # stripped, not folded: EMNIST's letters are cased classes
    assert ds.samples["split"].tolist() == splits
    text = caplog.text
    assert "the classes 'Coins' and 'coins' differ only by case" in text
    assert "1 rows have split 'Train', which is an evaluation set: only 'train' (lower case) trains on" in text
    assert "1 rows have split 'VAL'" in text and "'val' (lower case) selects the model on" in text
    assert "'moon'" not in text and "'test'" not in text


def test_build_manifest__no_warning_where_names_differ_otherwise(tmp_path, caplog):
    import logging

    rows = [{**r, "label": ["cat", "dog"][i % 2]} for i, r in enumerate(_basic(tmp_path))]
    with caplog.at_level(logging.WARNING, logger="soxai"):
        build_manifest(_cfg(_manifest(tmp_path, rows)))
    assert "differ only by case" not in caplog.text and "evaluation set" not in caplog.text
