"""The report stage's views of a run and the HTML file (soxai/report/runner.py)."""

import re

import pandas as pd
import pytest

from soxai.errors import StageError
from soxai.report.runner import (
    RunView,
    comparison_frame,
    concept_gallery,
    concept_overview,
    corrections_rows,
    read_run,
    saliency_counts,
    summary_sentence,
    write_report,
)
from soxai.run_dir import RunDir, read_json, write_json, write_parquet


def _view(flagged: dict, comparison=None, manifest_info=None) -> RunView:
    concepts = pd.DataFrame({
        "concept_id": [-1, 0, 1], "is_noise": [True, False, False], "size": [5, 40, 60], "label": [0, 0, 1],
        "label_purity": [0.8, 1.0, 1.0], "label_mix": ['{"0": 4, "1": 1}', '{"0": 40}', '{"1": 60}'],
        "accuracy": [0.5, 1.0, 0.9], "persistence": [0.0, 0.7, 0.3], "exemplars": [[], [], []],
        "map_index": [-1, 0, 1],
    })
    scores = pd.DataFrame({"concept_id": [0, 1], "detector": ["transplant"] * 2, "score": [0.8, -0.1],
                           "is_bias": [0 in flagged, False], "reason": ["moved 100%", "moved 1%"]})
    samples = pd.DataFrame({"sample_id": [f"s{i}" for i in range(105)], "split": ["train"] * 105,
                            "label": [0] * 45 + [1] * 60, "row": range(105)}).set_index("sample_id")
    return RunView(run=RunDir("/nonexistent"), info={"class_names": ["cat", "dog"]}, samples=samples,
                   concepts=concepts, assignments=pd.DataFrame(columns=["sample_id", "concept_id"]), scores=scores,
                   flagged=flagged, manifest=None, manifest_info=manifest_info, comparison=comparison)


def _comparison():
    def cell(m, h=0.05):
        return {"mean": m, "ci95": [m - h, m + h], "values": [m - h, m, m + h], "n": 3}

    splits = ("val", "test", "test_attacked")
    variants = {v: {s: {"accuracy": cell(a), "worst_group_accuracy": cell(a - 0.2)} for s in splits}
                for v, a in (("baseline", 0.5), ("pruned", 0.8), ("random_control", 0.52))}
    gains = {v: {s: {"accuracy": cell(a), "worst_group_accuracy": cell(a)} for s in splits}
             for v, a in (("pruned", 0.3), ("random_control", 0.02))}
    return {"seeds": [0, 1, 2], "variants": variants, "gain_over_baseline": gains,
            "pruned_over_random_control": {s: {"accuracy": cell(0.28), "worst_group_accuracy": cell(0.2)}
                                           for s in splits},
            "claims": {}, "detection": None, "cost": {}}


def test_summary_sentence__flagged_and_retrained_gives_gains_with_intervals():
    info = {"n_dropped": 40, "n_train": 105, "share_dropped": 40 / 105}
    text = summary_sentence(_view({0: "transplant: moved 100%"}, _comparison(), info))
    assert text.startswith("soxai flagged 1 of 2 concepts in 105 training samples (concept 0: class cat, 40 samples)")
    assert "dropped 40 of 105 training samples (38.1%)" in text
    assert "+0.300 [+0.250, +0.350] on test" in text and "versus the baseline" in text
    assert "+0.280 [+0.230, +0.330] on test_attacked versus a random prune" in text
    assert "val" not in text.split("(concept")[1]
    assert text.endswith(".") and ". " not in text  # one sentence


def _two_seeds(comp):
    """``comp`` as summarize writes it from 2 seeds: means, no intervals."""
    import json

    text = json.dumps(comp).replace('"n": 3', '"n": 2')
    comp = json.loads(re.sub(r'"ci95": \[[^\]]*\]', '"ci95": null', text))
    comp["seeds"] = [0, 1]
    return comp


def test_summary_sentence__two_seeds_give_means_and_say_there_is_no_interval():
    info = {"n_dropped": 40, "n_train": 105, "share_dropped": 40 / 105}
    text = summary_sentence(_view({0: "transplant: moved 100%"}, _two_seeds(_comparison()), info))
    assert "+0.300 (n=2, no interval) on test" in text and "[" not in text
    assert text.endswith("(mean over 2 seeds, no interval below 3).")


def test_comparison_frame__two_seeds_cells_say_there_is_no_interval():
    frame = comparison_frame(_two_seeds(_comparison())).set_index(["split", "variant"])
    assert frame.loc[("test", "pruned"), "accuracy"] == "0.800 (n=2, no interval)"
    assert frame.loc[("test", "pruned"), "over_control_accuracy"] == "+0.280 (n=2, no interval)"


def test_summary_sentence__says_what_the_carrier_test_moved():
    info = {"n_dropped": 42, "n_train": 105, "share_dropped": 0.4, "dropped_outside_flagged": 3, "members_kept": 1}
    text = summary_sentence(_view({0: "x"}, None, info))
    assert "(40.0%; the carrier test found 3 outside the flagged concepts and kept 1 members" in text
    plain = summary_sentence(_view({0: "x"}, None, {**info, "dropped_outside_flagged": 0, "members_kept": 0}))
    assert "carrier" not in plain and "(40.0%)" in plain


def test_summary_sentence__nothing_flagged_says_so():
    text = summary_sentence(_view({}))
    assert text.startswith("Nothing flagged") and "keeps every sample" in text


def test_summary_sentence__not_retrained_says_how_to():
    info = {"n_dropped": 40, "n_train": 105, "share_dropped": 0.38}
    assert "soxai retrain" in summary_sentence(_view({0: "x"}, None, info))


def test_concept_overview__flagged_first_noise_last():
    rows = concept_overview(_view({1: "transplant: moved 1%"}))
    assert rows["concept_id"].tolist() == [1, 0, -1]
    assert rows.loc[0, "reason"] == "transplant: moved 1%" and rows.loc[0, "class_name"] == "dog"
    assert rows.loc[1, "reason"] == "transplant: moved 100%"  # unflagged: the top detector's reason
    assert rows.loc[2, "label_mix"] == "cat 4, dog 1"


def test_comparison_frame__test_splits_only_and_control_gain_on_pruned_rows():
    frame = comparison_frame(_comparison())
    assert frame["split"].unique().tolist() == ["test", "test_attacked"]
    pruned = frame[frame["variant"] == "pruned"].iloc[0]
    assert pruned["accuracy"] == "0.800 [0.750, 0.850]"
    assert pruned["gain_accuracy"] == "+0.300 [+0.250, +0.350]"
    assert pruned["over_control_accuracy"] == "+0.280 [+0.230, +0.330]"
    assert (frame.loc[frame["variant"] != "pruned", "over_control_accuracy"] == "").all()
    assert (frame.loc[frame["variant"] == "baseline", "gain_accuracy"] == "").all()


def _with_corrections(comp):
    """``_comparison()`` with reweight, augment, jtt and oracle variants and the references they get."""
    def cell(m, h=0.05):
        return {"mean": m, "ci95": [m - h, m + h], "values": [m - h, m, m + h], "n": 3}

    splits = ("val", "test", "test_attacked")
    for v, a in (("reweight", 0.6), ("augment", 0.7), ("jtt", 0.55), ("oracle", 0.9)):
        comp["variants"][v] = {s: {"accuracy": cell(a), "worst_group_accuracy": cell(a - 0.2)} for s in splits}
        comp["gain_over_baseline"][v] = {s: {"accuracy": cell(a - 0.5), "worst_group_accuracy": cell(a - 0.5)}
                                         for s in splits}
    comp["over_jtt"] = {v: {s: {"accuracy": cell(d), "worst_group_accuracy": cell(d)} for s in splits}
                        for v, d in (("pruned", 0.25), ("reweight", 0.05), ("augment", 0.15))}
    comp["gap_recovered"] = {v: {s: {"accuracy": {**cell(r), "ratio_of_means": r}} for s in splits}
                             for v, r in (("pruned", 0.75), ("reweight", 0.25), ("augment", 0.5), ("jtt", 0.125))}
    comp["corrections"] = {
        "reweight": [{"concept_id": -1, "label": 0, "correction": "reweight", "n_samples": 5,
                      "reason": "class 0: noise holds 5 of 45 samples"}],
        "augment": [{"concept_id": 0, "label": 0, "correction": "drop_carriers", "n_samples": 40,
                     "reason": "concept 0 (class 0) cannot be augmented: flagged only by statistics_transplant"}]}
    return comp


def test_comparison_frame__corrections_get_gains_over_jtt_and_their_share_of_the_oracle_gap():
    frame = comparison_frame(_with_corrections(_comparison()))
    rows = frame[frame["split"] == "test_attacked"].set_index("variant")
    assert list(rows.index) == ["baseline", "pruned", "random_control", "reweight", "augment", "jtt", "oracle"]
    assert rows.loc["augment", "gain_accuracy"] == "+0.200 [+0.150, +0.250]"
    assert rows.loc["augment", "over_jtt_accuracy"] == "+0.150 [+0.100, +0.200]"
    assert rows.loc["augment", "oracle_gap_accuracy"] == "50%" and rows.loc["jtt", "oracle_gap_accuracy"] == "12%"
    assert rows.loc["augment", "over_control_accuracy"] == ""  # the random control is pruning's control
    assert rows.loc[["baseline", "jtt", "oracle"], "over_jtt_accuracy"].eq("").all()
    assert rows.loc["oracle", "oracle_gap_accuracy"] == "" and rows.loc["augment", "oracle_gap_worst_group"] == ""


def test_comparison_frame__old_comparison_with_pruned_over_jtt_only():
    comp = _with_corrections(_comparison())
    comp["pruned_over_jtt"] = comp.pop("over_jtt")["pruned"]
    rows = comparison_frame(comp).set_index(["split", "variant"])
    assert rows.loc[("test", "pruned"), "over_jtt_accuracy"] == "+0.250 [+0.200, +0.300]"


def test_corrections_rows__one_row_per_decision_with_its_reason():
    rows = corrections_rows(_with_corrections(_comparison()))
    assert [(r["variant"], r["concept"], r["correction"]) for r in rows] == [
        ("reweight", "noise", "reweight"), ("augment", "0", "drop_carriers")]
    assert "statistics_transplant" in rows[1]["reason"] and rows[1]["samples"] == "40"
    assert corrections_rows(None) == [] and corrections_rows(_comparison()) == []


def test_summary_sentence__names_the_other_corrections_gains():
    info = {"n_dropped": 40, "n_train": 105, "share_dropped": 40 / 105}
    text = summary_sentence(_view({0: "x"}, _with_corrections(_comparison()), info))
    assert "; reweighting by concepts changed accuracy by +0.100 [+0.050, +0.150] on test and" in text
    assert "; augmenting other classes with the flagged regions changed accuracy by +0.200" in text
    assert text.endswith("versus the baseline (mean [95% CI] over 3 seeds).") and ". " not in text
    nothing = summary_sentence(_view({}, _with_corrections(_comparison())))
    assert nothing.startswith("Nothing flagged") and "reweighting by concepts changed accuracy by" in nothing
    assert nothing.endswith("seeds).") and ". " not in nothing
    # a correction whose every decision is 'none' trained as the baseline, and the sentence says so
    idle = _with_corrections(_comparison())
    idle["corrections"]["reweight"] = [{"concept_id": 3, "label": 0, "correction": "none", "n_samples": 9,
                                        "reason": "a hard subgroup"}]
    text = summary_sentence(_view({0: "x"}, idle, info))
    assert "; reweighting by concepts found nothing to correct and trained as the baseline;" in text
    assert "; augmenting other classes with the flagged regions changed accuracy by +0.200" in text


def test_read_run__not_a_run_names_the_fix(tmp_path):
    with pytest.raises(StageError, match="does not exist"):
        read_run(tmp_path / "nope")
    with pytest.raises(StageError, match="missing.*soxai run"):
        read_run(tmp_path)


def _saliency_stage(run: RunDir, **metrics) -> None:
    write_json(run.stage_json("saliency"), {"stage": "saliency", "fingerprint": "x", "outputs": [],
                                            "metrics": metrics})


def test_saliency_counts__one_line_from_the_stage_metrics(tmp_path):
    run = RunDir(tmp_path)
    assert saliency_counts(run) is None  # the stage has not run
    _saliency_stage(run, n_maps=1200, all_zero=4, constant=3, non_finite=2, method="gradcam")
    assert saliency_counts(run) == "saliency: 1,200 maps (gradcam), 4 all-zero, 3 constant, 2 non-finite"
    _saliency_stage(run, n_maps=10, all_zero=0, non_finite=0, method="gradient")  # counted before 'constant'
    assert saliency_counts(run) == "saliency: 10 maps (gradient), 0 all-zero, 0 non-finite"


def test_write_report__provenance_shows_the_saliency_map_counts(tmp_path):
    from soxai.config import load_config
    from soxai.runs import init_run

    cfg = load_config(None)
    run = init_run(cfg, tmp_path / "run")  # a run with every sample in noise: no cards, no embedding
    write_json(run.data_info, {"source": "cells", "class_names": ["cat", "dog"]})
    write_parquet(run.samples, pd.DataFrame({"sample_id": ["s0", "s1"], "split": ["train"] * 2, "label": [0, 1],
                                             "row": [0, 1]}))
    write_parquet(run.concepts, _view({}).concepts.iloc[:0])
    write_parquet(run.assignments, pd.DataFrame({"sample_id": ["s0", "s1"], "concept_id": [-1, -1]}))

    html = write_report(cfg, run).read_text()
    assert 'id="saliency-counts"' not in html  # no saliency stage, no line

    _saliency_stage(run, n_maps=2, all_zero=1, constant=1, non_finite=0, method="gradcam")
    html = write_report(cfg, run).read_text()
    row = re.search(r'<th>saliency maps</th><td id="saliency-counts">([^<]*)</td>', html)
    assert row and row.group(1) == "saliency: 2 maps (gradcam), 1 all-zero, 1 constant, 0 non-finite"
    assert html.index('id="saliency-counts"') > html.index('id="provenance"')


@pytest.mark.slow
def test_write_report__self_contained_flagged_cards_first_and_small(smoke_run_dir):
    html = RunDir(smoke_run_dir).report_html.read_text()
    view = read_run(smoke_run_dir)
    assert view.flagged, "the smoke run plants an artifact that should be flagged"
    # one file that opens offline: no external resources, no scripts
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html) and "<script" not in html
    assert len(html.encode()) < 3_000_000
    cards = re.findall(r'class="concept-card( flagged)?" id="concept-(-?\d+)"', html)
    assert [int(cid) for _, cid in cards[: len(view.flagged)]] == sorted(view.flagged)
    assert all(flag for flag, _ in cards[: len(view.flagged)]) and not any(f for f, _ in cards[len(view.flagged):])
    assert 'id="comparison-chart"' in html and 'id="embedding-plot"' in html
    assert summary_sentence(view).split(" (")[0] in html
    # the smoke config retrains on 2 seeds: means without intervals, and the report says why
    assert re.search(r"[+-]\d\.\d{3} \(n=2, no interval\)", html) and not re.search(r"\[[+-]?\d\.\d{3}, ", html)
    assert "no interval below 3 seeds" in html and "no whiskers" in html
    assert "precision / recall" in html and "torch" in html and "config.yaml" in html
    n_maps = read_json(RunDir(smoke_run_dir).stage_json("saliency"))["metrics"]["n_maps"]
    assert f"saliency: {n_maps:,} maps (" in html and " constant, " in html


@pytest.mark.slow
def test_concept_gallery__exemplars_with_their_saliency(smoke_run_dir):
    view = read_run(smoke_run_dir)
    cid = sorted(view.flagged)[0]
    g = concept_gallery(view, cid, n=5)
    assert g.images.shape[0] == g.maps.shape[0] == len(g.sample_ids) == len(g.captions) == 5
    assert g.images.shape[2:] == g.maps.shape[1:] == g.mean_map.shape
    assert (abs(g.maps).reshape(5, -1).max(axis=1) > 0).all()
    with pytest.raises(StageError, match="no concept 999.*known concepts"):
        concept_gallery(view, 999)


def test_write_report__a_conflict_concept_gets_its_tile_badge_and_reason(smoke_run_dir, tmp_path):
    import shutil

    from soxai.bias.conflicts import conflict_concepts
    from soxai.config import load_run_config

    run = RunDir(shutil.copytree(smoke_run_dir, tmp_path / "run"))
    table = conflict_concepts(pd.read_parquet(run.assignments), max_p_value=1.0)  # every concept a conflict
    target = int(table["concept_id"].iloc[-1])
    table["is_conflict"] = table["concept_id"] == target
    write_parquet(run.bias_conflicts, table)
    html = write_report(load_run_config(run), run).read_text()
    assert ('conflicts (the baseline fails on them; not pruned, the reweight variant upweights those tied to a '
            f'flagged shortcut on most of a class): <a href="#concept-{target}">{target}</a>') in html
    card = html[html.index(f'id="concept-{target}"'):]
    card = card[:card.index("</h3>") + 2000]
    assert '<span class="badge">conflict</span>' in card and "<b>Conflict:</b>" in card
    # a run from before the test (no conflicts.parquet) renders with none
    run.bias_conflicts.unlink()
    assert "no conflict concept" in write_report(load_run_config(run), run).read_text()


def test_noise_exemplars__spread_over_the_classes_largest_first(smoke_run_dir, tmp_path):
    """The noise holds every class's unclustered samples; its stored exemplars (nearest the centre of all of them)
    showed only its most common class. The gallery now takes one of each class in turn."""
    import numpy as np

    from soxai.report.runner import noise_exemplars

    view = read_run(smoke_run_dir)
    a = view.assignments.copy()
    a["concept_id"] = 0
    by_class = {k: a.index[a["label"] == k][:n] for k, n in ((0, 10), (1, 3), (2, 1))}
    for rows in by_class.values():
        a.loc[rows, "concept_id"] = -1
    view.assignments = a
    picked = noise_exemplars(view, 6)
    labels = a.set_index("sample_id").loc[picked, "label"].tolist()
    assert labels == [0, 1, 2, 0, 1, 0]  # largest class first, then in turn while each class has samples left
    assert len(set(picked)) == 6 and set(picked) <= set(a.loc[a["concept_id"] == -1, "sample_id"])
    assert noise_exemplars(view, 20) and len(noise_exemplars(view, 20)) == 14  # no more than the noise holds
    # each class's first is the one nearest its own unclustered samples' centre in the embedding
    emb = pd.read_parquet(view.run.embedding).set_index("sample_id").loc[a.loc[by_class[0], "sample_id"]]
    xy = emb[["u0", "u1"]].to_numpy()
    assert picked[0] == emb.index[int(np.argmin(np.linalg.norm(xy - xy.mean(axis=0), axis=1)))]
    # a run without an embedding: by sample id
    view.run = RunDir(tmp_path)
    assert noise_exemplars(view, 3) == [str(a.loc[by_class[k], "sample_id"].min()) for k in (0, 1, 2)]
