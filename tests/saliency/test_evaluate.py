"""Saliency evaluation kernels on hand-made arrays with known answers, and the evaluation on a tiny run."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soxai.errors import ConfigError, DataError
from soxai.saliency.evaluate import (
    EmptyMaskWarning,
    deletion_insertion_auc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)

REPO = Path(__file__).resolve().parents[2]
SIDE = 6
BLOCK = (slice(1, 3), slice(1, 3))  # a 2x2 mask: 4 of 36 pixels


def _masks(n: int = 2) -> np.ndarray:
    masks = np.zeros((n, SIDE, SIDE), dtype=bool)
    masks[(slice(None), *BLOCK)] = True
    return masks


# -- localisation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", [relevance_mass_accuracy, relevance_rank_accuracy, pointing_game])
def test_localisation__map_on_mask_scores_one(kernel) -> None:
    masks = _masks()
    maps = masks * np.array([3.0, -2.0])[:, None, None]  # the sign does not matter: |map| is relevance

    np.testing.assert_allclose(kernel(maps, masks), [1.0, 1.0])


@pytest.mark.parametrize("kernel", [relevance_mass_accuracy, relevance_rank_accuracy, pointing_game])
def test_localisation__map_off_mask_scores_zero(kernel) -> None:
    masks = _masks()
    maps = np.zeros(masks.shape)
    maps[:, 4:, 4:] = 1.0  # far from the mask, beyond the pointing game's 1-pixel tolerance

    np.testing.assert_allclose(kernel(maps, masks), [0.0, 0.0])


def test_relevance_mass_accuracy__split_relevance_gives_share_inside() -> None:
    masks = _masks(1)
    maps = np.zeros(masks.shape)
    maps[0, 1, 1] = 3.0  # inside
    maps[0, 5, 5] = -1.0  # outside, counted by its magnitude

    np.testing.assert_allclose(relevance_mass_accuracy(maps, masks), [0.75])


def test_relevance_rank_accuracy__half_of_top_k_inside() -> None:
    masks = _masks(1)
    maps = np.zeros(masks.shape)
    maps[0, 1, 1:3] = [5.0, 4.0]  # two of the mask's pixels in the top 4
    maps[0, 5, 4:6] = [6.0, 7.0]  # and two outside, ranked above them

    np.testing.assert_allclose(relevance_rank_accuracy(maps, masks), [0.5])


@pytest.mark.parametrize("kernel", [relevance_mass_accuracy, relevance_rank_accuracy])
def test_localisation__zero_map_scores_chance(kernel) -> None:
    masks = _masks(1)

    np.testing.assert_allclose(kernel(np.zeros(masks.shape), masks), [4 / 36])


def test_pointing_game__tolerance_catches_neighbour_only() -> None:
    masks = _masks(3)
    maps = np.zeros(masks.shape)
    maps[0, 3, 2] = 1.0  # next to the mask (distance 1)
    maps[1, 3, 3] = 1.0  # diagonal neighbour (distance sqrt 2)
    maps[2, 4, 2] = 1.0  # two pixels away

    np.testing.assert_allclose(pointing_game(maps, masks, tolerance_px=0), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(pointing_game(maps, masks, tolerance_px=1), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(pointing_game(maps, masks, tolerance_px=2), [1.0, 1.0, 1.0])


def test_pointing_game__tied_maxima_give_share_of_hits() -> None:
    masks = _masks(1)
    maps = np.zeros(masks.shape)
    maps[0, 1, 1] = maps[0, 5, 5] = 2.0

    np.testing.assert_allclose(pointing_game(maps, masks, tolerance_px=0), [0.5])


@pytest.mark.parametrize("kernel", [relevance_mass_accuracy, relevance_rank_accuracy, pointing_game])
def test_localisation__empty_mask_is_nan_with_count(kernel) -> None:
    masks = _masks(3)
    masks[1] = False
    maps = masks.astype(float)

    with pytest.warns(EmptyMaskWarning, match="1 of 3 samples have an empty mask"):
        scores = kernel(maps, masks)

    assert math.isnan(scores[1])
    np.testing.assert_allclose(scores[[0, 2]], [1.0, 1.0])


def test_localisation__mismatched_shapes_raise() -> None:
    with pytest.raises(DataError, match="masks must have the shape of the maps"):
        relevance_mass_accuracy(np.zeros((2, SIDE, SIDE)), _masks(3))


def test_pointing_game__negative_tolerance_raises() -> None:
    with pytest.raises(ConfigError, match="tolerance_px"):
        pointing_game(np.zeros((1, SIDE, SIDE)), _masks(1), tolerance_px=-1)


# -- deletion / insertion -----------------------------------------------------------------------------

N_TOY = 6
TOY_SHAPE = (2, 8, 8)  # two channels: a deleted pixel loses both


def _block_model(x: np.ndarray) -> np.ndarray:
    """Two classes; p(class 1) rises steeply with the mean of the top-left 2x2 block of channel 0."""
    evidence = x[:, 0, :2, :2].mean(axis=(1, 2))
    p1 = 1.0 / (1.0 + np.exp(-12.0 * (evidence - 0.5)))
    return np.stack([1.0 - p1, p1], axis=1)


def _toy_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.4, size=(N_TOY, *TOY_SHAPE)).astype(np.float32)
    images[:, :, :2, :2] = 1.0
    perfect = np.zeros((N_TOY, *TOY_SHAPE[1:]))
    perfect[:, :2, :2] = 1.0
    return images, perfect, rng.random((N_TOY, *TOY_SHAPE[1:]))


def test_deletion_insertion_auc__perfect_map_beats_random_map() -> None:
    images, perfect, random = _toy_data()
    targets = np.ones(N_TOY, dtype=np.int64)

    good = deletion_insertion_auc(_block_model, images, perfect, targets, steps=8)
    bad = deletion_insertion_auc(_block_model, images, random, targets, steps=8)

    assert (good.deletion_auc < bad.deletion_auc).all()
    assert (good.insertion_auc > bad.insertion_auc).all()
    assert good.deletion_auc.mean() < 0.1 and good.insertion_auc.mean() > 0.9


def test_deletion_insertion_auc__curves_end_at_image_and_baseline() -> None:
    images, perfect, _ = _toy_data()
    targets = np.ones(N_TOY, dtype=np.int64)

    result = deletion_insertion_auc(_block_model, images, perfect, targets, steps=4)

    full = _block_model(images)[:, 1]
    empty = _block_model(np.zeros((1, *TOY_SHAPE), dtype=np.float32))[0, 1]
    assert result.deletion_curve.shape == result.insertion_curve.shape == (N_TOY, 5)
    np.testing.assert_allclose(result.deletion_curve[:, 0], full)
    np.testing.assert_allclose(result.insertion_curve[:, -1], full)
    np.testing.assert_allclose(result.deletion_curve[:, -1], empty)
    np.testing.assert_allclose(result.insertion_curve[:, 0], empty)
    assert ((result.deletion_auc >= 0) & (result.deletion_auc <= 1)).all()


def test_deletion_insertion_auc__batch_size_does_not_change_result() -> None:
    images, _, random = _toy_data()
    targets = np.array([0, 1] * (N_TOY // 2))

    small = deletion_insertion_auc(_block_model, images, random, targets, steps=5, batch_size=3)
    large = deletion_insertion_auc(_block_model, images, random, targets, steps=5, batch_size=1000)

    np.testing.assert_allclose(small.deletion_curve, large.deletion_curve)
    np.testing.assert_allclose(small.insertion_curve, large.insertion_curve)


def test_deletion_insertion_auc__constant_model_gives_its_probability() -> None:
    images, perfect, _ = _toy_data()

    result = deletion_insertion_auc(lambda x: np.full((len(x), 2), 0.5), images, perfect,
                                    np.zeros(N_TOY, dtype=np.int64), steps=3)

    np.testing.assert_allclose(result.deletion_auc, 0.5)
    np.testing.assert_allclose(result.insertion_auc, 0.5)


def test_deletion_insertion_auc__bad_predict_proba_output_raises() -> None:
    images, perfect, _ = _toy_data()

    with pytest.raises(DataError, match="predict_proba must return"):
        deletion_insertion_auc(lambda x: np.zeros(len(x)), images, perfect, np.zeros(N_TOY, dtype=np.int64))


def test_deletion_insertion_auc__too_many_steps_raise() -> None:
    images, perfect, _ = _toy_data()

    with pytest.raises(ConfigError, match="steps"):
        deletion_insertion_auc(_block_model, images, perfect, np.zeros(N_TOY, dtype=np.int64), steps=65)


# -- the evaluation on a run --------------------------------------------------------------------------

METHODS = ["gradient", "input_x_gradient", "gradcam"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from soxai.config import load_config
    from soxai.data.runner import run_data
    from soxai.runs import init_run
    from soxai.train.runner import run_model

    cfg = load_config(REPO / "configs" / "smoke.yaml", ["data.n_train_per_class=40", "data.n_val_per_class=5",
                                                        "data.n_test_per_class=10", "train.epochs=1",
                                                        # a 1-epoch model, near chance: the metrics' plumbing is tested
                                                        "train.allow_chance_baseline=true"])
    run = init_run(cfg, tmp_path_factory.mktemp("run"))
    run_data(cfg, run)
    run_model(cfg, run)
    return cfg, run


def test_evaluate_saliency__tiny_run_writes_table_and_summary(tiny_run) -> None:
    from soxai.saliency.evaluation import eval_paths, evaluate_saliency, format_table

    cfg, run = tiny_run

    table = evaluate_saliency(cfg, run, methods=METHODS, n_samples=20)

    paths = eval_paths(run)
    assert list(table["method"]) == METHODS
    assert (table["n"] == 20).all()
    scores = table[["mass_accuracy", "rank_accuracy", "pointing_game", "deletion_auc", "insertion_auc"]]
    assert scores.notna().all().all() and ((scores >= 0) & (scores <= 1)).all().all()
    assert (table["images_per_s"] > 0).all()
    pd.testing.assert_frame_equal(pd.read_parquet(paths.table_parquet), table)
    assert paths.table_csv.is_file()
    summary = json.loads(paths.summary.read_text())
    assert summary["has_masks"] and summary["metrics_unavailable"] == {}
    assert summary["best"]["deletion_auc"]["direction"] == "lower"
    assert set(summary["best"]) >= {"mass_accuracy", "insertion_auc"}
    assert all(m in format_table(table) for m in METHODS)


def test_evaluate_saliency__without_masks_omits_localisation(tiny_run, tmp_path) -> None:
    import shutil

    from soxai.run_dir import RunDir
    from soxai.saliency.evaluation import eval_paths, evaluate_saliency

    cfg, run = tiny_run
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(run.root, copy.root)
    copy.masks.unlink()

    table = evaluate_saliency(cfg, copy, methods=["gradient"], n_samples=5, splits=("test", "val"))

    assert "mass_accuracy" not in table and "deletion_auc" in table
    summary = json.loads(eval_paths(copy).summary.read_text())
    assert not summary["has_masks"] and "pointing_game" in summary["metrics_unavailable"]


def test_evaluate_saliency__empty_masks_excluded_and_counted(tiny_run, tmp_path) -> None:
    import shutil

    from soxai.data.runner import read_samples
    from soxai.run_dir import RunDir, read_npy, write_npy
    from soxai.saliency.evaluation import eval_paths, evaluate_saliency

    cfg, run = tiny_run
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(run.root, copy.root)
    masks = np.array(read_npy(copy.masks))
    test_rows = read_samples(copy).query("split == 'test'")["row"].to_numpy()
    masks[test_rows[:3]] = False
    write_npy(copy.masks, masks)

    table = evaluate_saliency(cfg, copy, methods=["gradient"], n_samples=100)

    summary = json.loads(eval_paths(copy).summary.read_text())
    assert (summary["n_candidates"], summary["n_excluded_empty_mask"]) == (len(test_rows), 3)
    assert table["n"].item() == len(test_rows) - 3 and table["mass_accuracy"].notna().all()


def test_evaluate_saliency__unknown_method_or_split_raises(tiny_run) -> None:
    from soxai.errors import StageError
    from soxai.saliency.evaluation import evaluate_saliency

    cfg, run = tiny_run

    with pytest.raises(ConfigError, match="unknown saliency methods"):
        evaluate_saliency(cfg, run, methods=["nope"])
    with pytest.raises(StageError, match="not in the data"):
        evaluate_saliency(cfg, run, methods=["gradient"], splits=("holdout",))


def test_format_table__nan_shown_as_dash_and_pipes_escaped() -> None:
    from soxai.saliency.evaluation import format_table

    text = format_table(pd.DataFrame({"method": ["a|b"], "n": [3], "deletion_auc": [float("nan")]}))

    assert text.splitlines()[0] == "| method | n | deletion_auc ↓ |"
    assert text.splitlines()[-1] == "| a\\|b | 3 | – |"
