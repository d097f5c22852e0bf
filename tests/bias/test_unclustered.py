"""Each class's unclustered samples tested as one group (soxai.bias.unclustered): a mark that moves."""

import numpy as np
import pandas as pd
import pytest

from soxai.bias.carriers import carrier_flip_rates
from soxai.bias.config import BiasConfig, CarriersConfig, TransplantConfig, UnclusteredConfig
from soxai.bias.context import DetectorContext
from soxai.bias.paste import OwnBox
from soxai.bias.unclustered import check_unclustered, otsu_cut
from soxai.manifest.policies import PolicyContext, drop_carriers, drop_flagged, drop_flagged_region

CFG = BiasConfig(transplant=TransplantConfig(region_frac=0.25), carriers=CarriersConfig(n_recipients=16),
                 unclustered=UnclusteredConfig(n_recipients=16))
CORNERS = ((0, 0), (0, 6), (6, 0), (6, 6))


def _predict(x: np.ndarray) -> np.ndarray:
    """Class 0 whenever a bright 2x2 mark sits in any corner (the shortcut); otherwise the class the image's
    middle encodes (its mean brightness: 0.1, 0.3, 0.5 for classes 0, 1, 2)."""
    marked = np.zeros(len(x), dtype=bool)
    for y, c in CORNERS:
        marked |= x[:, 0, y:y + 2, c:c + 2].min(axis=(1, 2)) > 0.95
    middle = x[:, 0, 2:6, 2:6].mean(axis=(1, 2))
    return np.where(marked, 0, np.digitize(middle, [0.2, 0.4]))


def _world(n: int = 120, n_marked: int = 18, marked_in_noise: int = 14, clean_noise: int = 20, seed: int = 0,
           atypical: int = 0):
    """Three classes of ``n`` 8x8 images; ``n_marked`` of class 0 carry the mark in a random corner. The clustering
    left ``marked_in_noise`` of them and ``clean_noise`` clean samples of every class unclustered; each sample's own
    map peaks on its mark, or on its middle. With ``atypical``, class 1's unclustered samples and its ``atypical``
    clustered samples of lowest membership probability have a dark centre, whose box moves class-2 images to class 1
    (atypical images of a clean class, at the edge of the clustering and beyond it)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], n)
    images = np.full((3 * n, 1, 8, 8), 0.05, dtype=np.float32)
    images[:, 0, 2:6, 2:6] = np.array([0.1, 0.3, 0.5], dtype=np.float32)[labels, None, None]
    images += rng.uniform(0, 0.02, images.shape).astype(np.float32)
    maps = np.zeros((3 * n, 8, 8), dtype=np.float32)
    maps[:, 3:5, 3:5] = 1.0
    marked = np.zeros(3 * n, dtype=bool)
    marked[rng.choice(n, n_marked, replace=False)] = True
    for i in np.flatnonzero(marked):
        y, c = CORNERS[rng.integers(4)]
        images[i, 0, y:y + 2, c:c + 2] = 1.0
        maps[i] = 0.0
        maps[i, y:y + 2, c:c + 2] = 2.0
    concept = np.where(labels == 0, 0, labels)  # one concept per class ...
    noise = np.zeros(3 * n, dtype=bool)
    noise[np.flatnonzero(marked)[:marked_in_noise]] = True  # ... most carriers unclustered
    for k in range(3):
        clean = np.flatnonzero((labels == k) & ~marked)
        noise[rng.choice(clean, clean_noise, replace=False)] = True
    concept = np.where(noise, -1, concept)
    probability = np.where(noise, 0.0, rng.uniform(0.5, 1.0, 3 * n))
    if atypical:
        clustered_1 = np.flatnonzero((labels == 1) & ~noise)
        edge = clustered_1[np.argsort(probability[clustered_1], kind="stable")[:atypical]]
        dark = np.concatenate([np.flatnonzero((labels == 1) & noise), edge])
        images[dark, 0, 3:5, 3:5] = 0.0
    train = pd.DataFrame({"sample_id": [f"s{i:04d}" for i in range(3 * n)], "row": np.arange(3 * n), "label": labels,
                          "concept_id": concept, "probability": probability})
    train["pred"] = _predict(images)
    concepts = pd.DataFrame({"concept_id": [-1, 0, 1, 2], "label": [0, 0, 1, 2],
                             "is_noise": [True, False, False, False], "map_index": [-1, 0, 1, 2]})
    ctx = DetectorContext(images, train, concepts, maps[:3], _predict, 0, lambda rows: maps[np.asarray(rows)])
    return ctx, marked


def test_otsu_cut__separates_two_groups_and_none_for_one_value():
    assert 0.1 < otsu_cut(np.array([0.0, 0.0, 0.05, 0.1, 0.8, 0.9, 0.85])) < 0.8
    assert otsu_cut(np.array([0.3, 0.3])) == float("inf")


def test_own_box__each_donor_pastes_its_own_most_salient_box():
    ctx, marked = _world()
    recipients = np.asarray(ctx.images[ctx.train["label"].to_numpy() == 2][:8])
    rows = np.concatenate([np.flatnonzero(marked)[:3], np.flatnonzero(~marked & (ctx.train["label"] == 0))[:3]])
    region = OwnBox(2, ctx.sample_maps, ctx.predict)
    assert carrier_flip_rates(ctx.predict, ctx.images, rows, recipients, 0, region).tolist() == [1.0] * 3 + [0.0] * 3
    # a fixed box holds the mark of the donors whose mark sits there only
    fixed = carrier_flip_rates(ctx.predict, ctx.images, np.flatnonzero(marked), recipients, 0, (0, 0, 2, 2))
    assert 0 < fixed.mean() < 1


def test_check_unclustered__a_moving_mark_in_the_noise_is_flagged_and_its_carriers_found():
    ctx, marked = _world()
    table, carriers = check_unclustered(ctx, CFG)
    row = table.set_index("label").loc[0]
    assert bool(row["is_bias"]) and row["p_value"] < 0.01 / 3
    assert "moved" in row["reason"] and "Mann-Whitney" in row["reason"]
    assert not table.set_index("label").loc[[1, 2], "is_bias"].any()
    assert set(carriers["label"]) == {0} and (carriers["concept_id"] == -1).all()
    found = set(carriers.loc[carriers["carries"], "sample_id"])
    truth = set(ctx.train.loc[marked, "sample_id"])
    assert found == truth  # the 4 carriers the clustering put in concept 0 too
    # each carrier's own box, the one it pasted (what augment pastes from it), holds its mark wherever it sits
    for row in carriers[carriers["carries"]].itertuples():
        y0, x0, y1, x1 = (int(v) for v in (row.window_y0, row.window_x0, row.window_y1, row.window_x1))
        image = ctx.images[int(row.sample_id[1:])]
        assert (y1 - y0, x1 - x0) == (2, 2) and image[0, y0:y1, x0:x1].min() > 0.95
    assert carriers[["window_y0", "window_x0", "window_y1", "window_x1"]].notna().all().all()


def test_check_unclustered__atypical_clean_samples_are_measured_against_the_edge_of_their_concepts():
    """Class 1's unclustered samples carry further than its typical ones, and so do its clustered samples at the
    edge of their concepts: against the edge the class is not flagged (against every clustered sample it was);
    the marked class 0 still is."""
    ctx, _ = _world(atypical=20)
    table, carriers = check_unclustered(ctx, CFG)
    rows = table.set_index("label")
    assert rows.loc[1, "unclustered_rate"] > 0.3 and rows.loc[1, "edge_rate"] > 0.3
    assert not rows.loc[1, "is_bias"] and rows.loc[1, "n_edge"] == 20
    assert "edge of their concepts" in rows.loc[1, "reason"]
    assert rows.loc[0, "is_bias"] and set(carriers["label"]) == {0}
    # the same class measured against all its clustered samples, as before: it would have been flagged
    from scipy.stats import mannwhitneyu

    from soxai.bias.ownbox import compare_own_boxes, own_box_region
    train = ctx.train
    cls = train[train["label"] == 1]
    pool = train[(train["pred"] == train["label"]) & (train["label"] != 1)]
    a, b, p, _ = compare_own_boxes(ctx, own_box_region(ctx, CFG), cls[cls["concept_id"] == -1],
                                   cls[cls["concept_id"] != -1], pool, 1, 16, 256, np.random.default_rng(0))
    assert p < 0.01 / 3 and mannwhitneyu(a, b, alternative="greater").pvalue == p


def test_check_unclustered__no_mark_flags_nothing():
    ctx, _ = _world(n_marked=0, marked_in_noise=0)
    table, carriers = check_unclustered(ctx, CFG)
    assert not table["is_bias"].any() and carriers is None
    assert len(table) == 3 and table["reason"].str.contains("not flagged").all()


def test_policies__unclustered_flag_drops_its_carriers_never_all_noise():
    ctx, marked = _world()
    _, carriers = check_unclustered(ctx, CFG)
    train = ctx.train
    flagged = {-1: "class 0's unclustered samples"}
    keep, reasons = drop_carriers(train, flagged, PolicyContext({}, lambda p: None, 0.2, carriers))
    assert set(train.loc[~keep, "sample_id"]) == set(train.loc[marked, "sample_id"])
    assert all("unclustered" in r for r, k in zip(reasons, keep, strict=True) if not k)
    # with the data's class names, as the concepts table writes them (manifest logic 4)
    _, named = drop_carriers(train, flagged, PolicyContext({}, lambda p: None, 0.2, carriers, ("marked", "b", "c")))
    assert all("among the unclustered samples of class marked" in r for r, k in zip(named, keep, strict=True) if not k)
    assert drop_flagged(train, flagged)[0].all()
    assert drop_flagged_region(train, flagged, PolicyContext({}, lambda p: None, 0.2))[0].all()


@pytest.mark.parametrize("enabled", [True, False])
def test_unclustered_config__off_switch_and_bounds(enabled):
    cfg = BiasConfig(unclustered=UnclusteredConfig(enabled=enabled))
    assert cfg.unclustered.enabled is enabled
    with pytest.raises(ValueError):
        UnclusteredConfig(max_p_value=0)


@pytest.mark.slow
def test_report__names_a_flagged_class_of_unclustered_samples(tiny_explained, tmp_path):
    """The report and the summary sentence say when a class's unclustered samples were flagged, even with no
    concept flagged (they would otherwise read 'Nothing flagged' over a manifest that drops samples)."""
    import shutil

    from soxai.report.runner import read_run, summary_sentence, write_report
    from soxai.run_dir import RunDir, read_json, write_json

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    info = read_json(run.manifest_json)
    reason = "class 1's 40 unclustered samples ... moved 30% of them to class 1 ...: a shortcut among samples"
    write_json(run.manifest_json, {**info, "flagged_concepts": {}, "flagged_unclustered": {"1": reason}})
    (run.root / "bias" / "scores.parquet").unlink()  # no concept flagged
    sentence = summary_sentence(read_run(run))
    assert "Nothing flagged" not in sentence and "unclustered samples of" in sentence
    html = write_report(cfg, run).read_text()
    assert 'id="unclustered-tile"' in html and 'id="unclustered-1"' in html and "moved 30% of them" in html
    name = read_json(run.data_info)["class_names"][1]  # the tile and the heading name the class as the cards do
    assert f">class {name}</a>" in html and f"Unclustered samples, class {name}:" in html


def test_own_box_detector__flags_the_concept_of_a_moving_mark_with_one_bar():
    """The own_box detector on the same world, the carriers all in concept 3: flagged with its reason; the other
    concepts, whose members paste ordinary boxes like their class-mates, are not; the carrier test repeats it."""
    from soxai.bias.carriers import find_carriers
    from soxai.bias.config import OwnBoxConfig
    from soxai.bias.detectors import run_detector

    ctx, marked = _world(marked_in_noise=0)
    ctx.train.loc[marked, "concept_id"] = 3
    ctx.concepts = pd.concat([ctx.concepts, pd.DataFrame({"concept_id": [3], "label": [0], "is_noise": [False],
                                                          "map_index": [0]})], ignore_index=True)
    cfg = CFG.model_copy(update={"own_box": OwnBoxConfig(n_recipients=16)})
    rows = pd.DataFrame(run_detector("own_box", ctx, cfg)).set_index("concept_id")
    assert rows.loc[3, "is_bias"] and rows.loc[3, "p_value"] <= 0.01 / 4 and "Mann-Whitney" in rows.loc[3, "reason"]
    assert not rows.loc[[0, 1, 2], "is_bias"].any()
    carriers = find_carriers(ctx, rows.reset_index(), {3: "own_box"}, cfg)
    assert set(carriers.loc[carriers["carries"], "sample_id"]) == set(ctx.train.loc[marked, "sample_id"])
    assert carriers["test"].str.contains("own most salient").all()
