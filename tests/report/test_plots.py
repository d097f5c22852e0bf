"""Figures of the report: subsampling, image tiles, charts (tiny arrays, no run needed)."""

import numpy as np

from soxai.report import plots


def _comparison(names=("baseline", "pruned", "random_control")):
    def cell(m, h=0.05):
        return {"mean": m, "ci95": [m - h, m + h], "values": [m - h, m, m + h], "n": 3}

    splits = {"val": {}, "test": {}, "test_attacked": {}}
    variants = {}
    for v, acc in zip(names, np.linspace(0.9, 0.6, len(names)), strict=True):
        variants[v] = {s: {"accuracy": cell(acc), "worst_group_accuracy": cell(acc - 0.3)} for s in splits}
    return {"variants": variants, "seeds": [0, 1, 2]}


def test_subsample__keeps_every_concept_within_budget():
    rng = np.random.default_rng(0)
    ids = np.concatenate([np.zeros(95_000, int), np.full(30, 7), rng.integers(1, 5, 4_970), np.full(5, -1)])
    idx = plots.subsample(ids, max_points=5_000, min_per_concept=50)
    assert len(idx) <= 5_000 and np.all(np.diff(idx) > 0)
    assert set(np.unique(ids[idx])) == set(np.unique(ids))
    assert (ids[idx] == 7).sum() == 30  # a small concept keeps all its points


def test_subsample__small_input_is_kept_whole():
    ids = np.array([0, 1, -1, 1])
    np.testing.assert_array_equal(plots.subsample(ids, max_points=10), np.arange(4))


def test_overlay__zero_saliency_leaves_the_dimmed_image():
    img = np.full((1, 4, 4), 0.8, dtype=np.float32)
    out = plots.overlay(img, np.zeros((4, 4)))
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(out, 0.4, atol=1e-6)


def test_overlay__salient_pixel_is_coloured():
    img = np.zeros((3, 4, 4), dtype=np.float32)
    sal = np.zeros((4, 4))
    sal[1, 2] = -5.0  # sign does not matter: relevance is |saliency|
    out = plots.overlay(img, sal)
    assert out[1, 2].max() > 0.3 and out[0, 0].max() == 0


def test_gallery_tiles__two_rows_one_column_per_exemplar_plus_mean():
    images = np.random.default_rng(0).random((3, 1, 8, 6)).astype(np.float32)
    maps = np.random.default_rng(1).random((3, 8, 6)).astype(np.float32)
    tiles = plots.gallery_tiles(images.mean(0), maps.mean(0), images, maps, scale=2, gap=1, box=(1, 1, 4, 4))
    assert tiles.dtype == np.uint8
    assert tiles.shape == (2 * 16 + 3, 4 * 12 + 5, 3)
    png = plots.png_of_array(tiles)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_comparison_figure__one_panel_per_metric_without_val():
    fig = plots.comparison_figure(_comparison())
    axes = fig.get_axes()
    assert [a.get_title().split(" (")[0] for a in axes] == ["accuracy", "worst-group accuracy"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["test", "test_attacked"]
    assert plots.comparison_chart(_comparison())  # base64 PNG for the report


def test_comparison_figure__two_seeds_draw_no_whiskers_and_say_so():
    comp = _comparison()
    for per_split in comp["variants"].values():
        for cells in per_split.values():
            for cell in cells.values():
                cell.update(ci95=None, n=2)
    fig = plots.comparison_figure(comp)
    ax = fig.get_axes()[0]
    assert ax.get_title() == "accuracy (mean; no interval below 3 seeds)"
    whiskers = [seg for c in ax.containers if hasattr(c, "lines") and c.lines[2]
                for coll in c.lines[2] for seg in coll.get_segments()]
    assert whiskers and all(abs(seg[0][1] - seg[1][1]) < 1e-12 for seg in whiskers)  # zero length
    assert plots.comparison_figure(_comparison()).get_axes()[0].get_title() == "accuracy (mean, 95% CI over seeds)"


def test_comparison_figure__every_variant_a_bar_of_its_own_colour():
    names = ("baseline", "pruned", "random_control", "reweight", "augment", "jtt", "oracle")
    fig = plots.comparison_figure(_comparison(names))
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [n.replace("_", " ") for n in names]
    from matplotlib.container import BarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == len(names) == len({tuple(c.patches[0].get_facecolor()) for c in bars})
    assert fig.get_figwidth() > plots.comparison_figure(_comparison()).get_figwidth()


def test_embedding_figure__hundred_thousand_points_are_subsampled():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(100_000, 2))
    ids = rng.integers(-1, 30, 100_000)
    fig = plots.embedding_figure(coords, ids, {3}, max_points=5_000)
    drawn = sum(len(c.get_offsets()) for c in fig.get_axes()[0].collections)
    assert drawn <= 5_000
    assert "5,000 of 100,000" in fig.get_axes()[0].get_title()


def test_concept_gallery_figure__captions_and_box():
    images = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    maps = np.random.default_rng(1).random((2, 8, 8))
    fig = plots.concept_gallery_figure(images.mean(0), maps.mean(0), images, maps, ["a", "b"], title="t",
                                       box=(0, 0, 2, 2))
    assert len(fig.get_axes()) == 6
    assert fig.get_axes()[1].get_title() == "a"
    assert plots.figure_png(fig)[:4] == b"\x89PNG"
