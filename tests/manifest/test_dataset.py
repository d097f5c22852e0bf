"""PrunedManifestDataset: a run's pruned training set in a user's own torch training code."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from soxai.errors import DataError, StageError
from soxai.run_dir import RunDir


@pytest.mark.slow
def test_dataset__three_lines_give_a_dataloader_of_the_kept_samples(smoke_run_dir):
    import torch
    from torch.utils.data import DataLoader

    from soxai.manifest.dataset import PrunedManifestDataset

    loader = DataLoader(PrunedManifestDataset(smoke_run_dir), batch_size=32, shuffle=True)

    manifest = pd.read_parquet(RunDir(smoke_run_dir).pruned_parquet)
    kept = manifest[(manifest["split"] == "train") & manifest["keep"]]
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[0] == 32
    assert y.dtype == torch.int64
    assert sum(len(b) for b, _ in loader) == len(kept)
    ds = loader.dataset
    assert set(ds.sample_ids) == set(kept["sample_id"])
    assert len(kept) < (manifest["split"] == "train").sum()  # the smoke run drops the planted artifact


@pytest.mark.slow
def test_dataset__items_match_the_stored_images_and_labels(smoke_run_dir):
    from soxai.manifest.dataset import PrunedManifestDataset

    run = RunDir(smoke_run_dir)
    ds = PrunedManifestDataset(run.root, split="test", keep_only=False)
    samples = pd.read_parquet(run.samples).set_index("sample_id")
    images = np.load(run.images, mmap_mode="r")
    for i in (0, len(ds) - 1):
        x, y = ds[i]
        row = samples.loc[ds.sample_ids[i]]
        assert y == int(row["label"])
        np.testing.assert_array_equal(x.numpy(), images[int(row["row"])])
    assert ds.class_names and len(ds) == (samples["split"] == "test").sum()


@pytest.mark.slow
def test_dataset__keep_only_false_serves_dropped_samples_too(smoke_run_dir):
    from soxai.manifest.dataset import PrunedManifestDataset

    kept = PrunedManifestDataset(smoke_run_dir)
    every = PrunedManifestDataset(smoke_run_dir, keep_only=False)
    assert set(kept.sample_ids) < set(every.sample_ids)


@pytest.mark.slow
def test_dataset__transform_is_applied(smoke_run_dir):
    from soxai.manifest.dataset import PrunedManifestDataset

    ds = PrunedManifestDataset(smoke_run_dir, transform=lambda x: x * 0 + 7)
    x, _ = ds[0]
    assert float(x.min()) == float(x.max()) == 7.0


@pytest.mark.slow
def test_dataset__works_in_worker_processes(smoke_run_dir):
    from torch.utils.data import DataLoader

    from soxai.manifest.dataset import PrunedManifestDataset

    ds = PrunedManifestDataset(smoke_run_dir)
    ds[0]  # opens the memory map in this process; workers must open their own
    # spawn, not fork: the dataset must pickle and reopen its memory map in a fresh worker, and a
    # forked worker would inherit the threads earlier tests left in this process (Prefect's harness)
    batches = list(DataLoader(ds, batch_size=64, num_workers=2, multiprocessing_context="spawn"))
    assert sum(len(y) for _, y in batches) == len(ds)


def test_dataset__run_without_manifest_raises_stage_error(tmp_path):
    from soxai.manifest.dataset import PrunedManifestDataset

    with pytest.raises(StageError, match="no pruned manifest.*soxai explain"):
        PrunedManifestDataset(tmp_path)


@pytest.mark.slow
def test_dataset__unknown_split_names_the_splits(smoke_run_dir):
    from soxai.manifest.dataset import PrunedManifestDataset

    with pytest.raises(DataError, match="no split 'holdout'.*'train'"):
        PrunedManifestDataset(smoke_run_dir, split="holdout")


def test_import_soxai_manifest__does_not_import_torch():
    code = "import sys, soxai.manifest, soxai.manifest.export; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
