import numpy as np

from soxai.segmentation.flags import _one_sided_p, class_share, transplant_effect


def _predict_by_mark(x: np.ndarray) -> np.ndarray:
    """A network that labels the whole image class 1 when pixel (0, 0) is bright, else class 2."""
    return np.where(x[:, 0, :1, :1] > 0.5, 1, 2) * np.ones((len(x), *x.shape[2:]), dtype=np.int64)


def test_class_share__share_of_the_cell_pixels_with_the_class():
    pred = np.array([[[1, 1], [2, 0]]])
    cells = np.array([[[True, False], [True, True]]])
    np.testing.assert_allclose(class_share(pred, cells, 1), [1 / 3])


def test_transplant_effect__pasted_mark_turns_the_cell_and_class_mates_pixels_do_not():
    recipients = np.zeros((4, 1, 4, 4), dtype=np.float32)
    marked = recipients.copy()
    marked[:, 0, 0, 0] = 1.0
    cells = np.zeros((4, 4, 4), dtype=bool)
    cells[:, 2:, 2:] = True
    pixels = np.zeros((4, 4), dtype=bool)
    pixels[0, 0] = True
    np.testing.assert_allclose(transplant_effect(_predict_by_mark, recipients, cells, marked, pixels, 1), 1.0)
    np.testing.assert_allclose(transplant_effect(_predict_by_mark, recipients, cells, recipients, pixels, 1), 0.0)
    # the other way round: class-mates' clean pixels take the class from marked members
    np.testing.assert_allclose(-transplant_effect(_predict_by_mark, marked, cells, recipients, pixels, 1), 1.0)


def test_one_sided_p__consistent_gain_small_no_gain_one():
    assert _one_sided_p(np.full(30, 0.5)) < 1e-6
    assert _one_sided_p(np.zeros(30)) == 1.0
    assert _one_sided_p(np.full(30, -0.5)) > 0.99
