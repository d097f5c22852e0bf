"""The conflict test: concepts the baseline gets wrong far more often than the rest of their class."""

import numpy as np
import pandas as pd
import pytest

from soxai.bias.conflicts import CONFLICT_COLUMNS, conflict_concepts


def _frame(groups):
    """groups: list of (concept_id, label, n, n_wrong); a wrong sample is predicted as the other class."""
    rows = []
    for cid, label, n, wrong in groups:
        for i in range(n):
            rows.append({"concept_id": cid, "label": label, "pred": 1 - label if i < wrong else label})
    return pd.DataFrame(rows)


def test_conflict_concepts__a_minority_the_baseline_gets_wrong_is_a_conflict_and_the_majority_is_not():
    # ColoredMNIST's shape: class 0's minority colour (130 samples, 120 wrong) beside its majority (1,300, 13 wrong)
    frame = _frame([(0, 0, 1300, 13), (1, 0, 130, 120), (2, 1, 1200, 12), (3, 1, 125, 118), (-1, 1, 40, 4)])
    out = conflict_concepts(frame, max_p_value=0.01)
    assert list(out.columns) == list(CONFLICT_COLUMNS)
    assert out.set_index("concept_id")["is_conflict"].to_dict() == {0: False, 1: True, 2: False, 3: True}
    one = out.set_index("concept_id").loc[1]
    assert (one["label"], one["n"], one["errors"], one["rest_n"], one["rest_errors"]) == (0, 130, 120, 1300, 13)
    assert one["pred_majority"] == 1
    assert one["p_bonferroni"] == pytest.approx(min(one["p_value"] * 4, 1.0))
    assert "a conflict" in one["reason"] and "reweight" in one["reason"]
    # the noise counts in the rest of its class but is never tested itself
    assert out.set_index("concept_id").loc[3, "rest_n"] == 1240 and -1 not in set(out["concept_id"])


def test_conflict_concepts__equal_error_rates_give_no_conflict_and_bonferroni_counts_every_concept():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"concept_id": np.repeat(np.arange(10), 100), "label": np.repeat(np.arange(10) % 2, 100)})
    frame["pred"] = np.where(rng.random(1000) < 0.1, 1 - frame["label"], frame["label"])
    out = conflict_concepts(frame)
    assert not out["is_conflict"].any()
    assert (out["p_bonferroni"] >= np.minimum(out["p_value"] * 10, 1.0) - 1e-12).all()
    assert out["reason"].str.contains("no conflict").all()


def test_conflict_concepts__a_p_value_just_past_the_bar_is_not_a_conflict():
    frame = _frame([(0, 0, 100, 5), (1, 0, 20, 4)])  # 20% against 5%: p ~ 0.04 before correction
    out = conflict_concepts(frame, max_p_value=0.01).set_index("concept_id")
    assert 0.01 < out.loc[1, "p_bonferroni"] and not out.loc[1, "is_conflict"]
    loose = conflict_concepts(frame, max_p_value=0.5).set_index("concept_id")
    assert loose.loc[1, "is_conflict"]


def test_conflict_concepts__missing_columns_are_named():
    with pytest.raises(ValueError, match=r"missing \['pred'\]"):
        conflict_concepts(pd.DataFrame({"label": [0], "concept_id": [0]}))


def test_run_bias__writes_every_concepts_conflict_row(tiny_explained):
    from soxai.run_dir import read_json, read_parquet

    _, run = tiny_explained
    out = read_parquet(run.bias_conflicts)
    concepts = read_parquet(run.concepts)
    assert list(out.columns) == list(CONFLICT_COLUMNS)
    assert set(out["concept_id"]) == set(concepts.loc[~concepts["is_noise"], "concept_id"].astype(int))
    stage = read_json(run.stage_json("bias"))
    assert stage["metrics"]["conflicts"] == sorted(out.loc[out["is_conflict"], "concept_id"].astype(int))


def test_conflict_concepts__only_noise_gives_an_empty_table_whose_flag_column_is_boolean():
    out = conflict_concepts(pd.DataFrame({"label": [0, 1], "pred": [0, 0], "concept_id": [-1, -1]}))
    assert len(out) == 0 and list(out.columns) == list(CONFLICT_COLUMNS)
    assert out["is_conflict"].dtype == bool and list(out[out["is_conflict"]].columns) == list(CONFLICT_COLUMNS)


def test_conflict_concepts__the_reason_names_the_classes_where_the_data_names_them():
    frame = _frame([(0, 0, 1300, 13), (1, 0, 130, 120), (2, 1, 1200, 12)])
    named = conflict_concepts(frame, class_names=("red", "green")).set_index("concept_id")
    assert "most predicted as class green" in named.loc[1, "reason"]
    assert "other 1300 of class red" in named.loc[1, "reason"]
    coded = conflict_concepts(frame).set_index("concept_id")
    assert "most predicted as class 1" in coded.loc[1, "reason"]
    assert named["is_conflict"].tolist() == coded["is_conflict"].tolist()
