import numpy as np
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from soxai.concepts.cluster import NOISE, cluster_embeddings, cluster_per_group, describe_concepts, mean_maps


def test_cluster_embeddings__recovers_planted_blobs():
    x, y = make_blobs(n_samples=600, centers=4, cluster_std=0.4, random_state=0)
    labels, probs, persistence = cluster_embeddings(x, min_cluster_size=20)
    found = labels != NOISE
    assert found.mean() >= 0.9
    assert adjusted_rand_score(y[found], labels[found]) >= 0.9
    assert len(persistence) == 4 and probs.shape == (600,)


def test_cluster_per_group__ids_do_not_collide_across_groups():
    x, _ = make_blobs(n_samples=400, centers=2, cluster_std=0.3, random_state=1)
    groups = np.repeat([0, 1], 200)
    labels, _, persistence = cluster_per_group(x, groups, 15, None)
    ids_a, ids_b = set(labels[:200]) - {NOISE}, set(labels[200:]) - {NOISE}
    assert ids_a and ids_b and not ids_a & ids_b
    assert set(persistence) == ids_a | ids_b


def test_cluster_embeddings__tiny_input_is_all_noise():
    labels, _, pers = cluster_embeddings(np.zeros((1, 2)), 5)
    assert labels.tolist() == [NOISE] and len(pers) == 0


def test_describe_concepts__counts_and_exemplars():
    cids = np.array([0, 0, 0, 1, 1, NOISE])
    labels = np.array([2, 2, 1, 0, 0, 1])
    correct = np.array([1, 1, 0, 1, 1, 0], dtype=bool)
    emb = np.array([[0, 0], [0.1, 0], [5, 5], [9, 9], [9, 9.1], [3, 3]], dtype=float)
    table = describe_concepts(cids, labels, correct, np.ones(6), np.array(list("abcdef")), emb, {0: 0.5}, 2)
    row = table.set_index("concept_id").loc[0]
    assert row["size"] == 3 and row["label"] == 2 and abs(row["accuracy"] - 2 / 3) < 1e-9
    assert len(row["exemplars"]) == 2 and "c" not in row["exemplars"]  # the outlier is least typical
    assert table.set_index("concept_id").loc[NOISE, "is_noise"]


def test_mean_maps__peak_normalised_mean_per_concept():
    maps = np.zeros((3, 2, 2), dtype=np.float32)
    maps[0, 0, 0], maps[1, 0, 0], maps[2, 1, 1] = 2.0, 4.0, -3.0
    out = mean_maps(maps, np.array([0, 0, 1]), [0, 1])
    assert out.shape == (2, 2, 2)
    assert out[0, 0, 0] == 1.0 and out[1, 1, 1] == 1.0


def test_resampling_stability__real_blobs_come_back_an_arbitrary_split_does_not():
    from soxai.concepts.cluster import resampling_stability

    x, y = make_blobs(n_samples=300, centers=3, cluster_std=0.4, random_state=2)
    stab = resampling_stability(x, y, 20, None, 4, 0.8, seed=0)
    assert set(stab) == {0, 1, 2} and min(stab.values()) >= 0.9
    # one blob cut in two halves by a line: HDBSCAN never finds the halves again
    arbitrary = np.where(y == 0, np.where(x[:, 0] > np.median(x[y == 0, 0]), 5, 0), y)
    stab_cut = resampling_stability(x, arbitrary, 20, None, 4, 0.8, seed=0)
    assert stab_cut[0] <= 0.6 and stab_cut[5] <= 0.6 and stab_cut[1] >= 0.9
    assert resampling_stability(x, y, 20, None, 4, 0.8, seed=0) == stab  # seeded
