import numpy as np
import pytest

from soxai.data.artifacts import CORNERS, artifact_boxes, artifact_pattern, paste_artifact
from soxai.data.config import ArtifactConfig
from soxai.errors import DataError


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Pixels (N, H, W) that differ on any channel."""
    return (before != after).any(axis=1)


@pytest.mark.parametrize("shape", ["square", "cross", "ring", "stripe"])
def test_artifact_pattern__tight_and_symmetric(shape):
    pattern = artifact_pattern(ArtifactConfig(shape=shape, size=7))
    assert pattern.dtype == bool
    # The box hugs the painted pixels: every border row and column holds some of them.
    assert pattern[0].any() and pattern[-1].any() and pattern[:, 0].any() and pattern[:, -1].any()
    np.testing.assert_array_equal(pattern, pattern[::-1, ::-1])


def test_artifact_pattern__shapes_differ():
    size = 7
    shapes = ("square", "cross", "ring", "stripe")
    patterns = {s: artifact_pattern(ArtifactConfig(shape=s, size=size)) for s in shapes}
    assert patterns["square"].all() and patterns["square"].shape == (size, size)
    assert not patterns["ring"][size // 2, size // 2], "a ring is hollow"
    assert not patterns["cross"][0, 0] and patterns["cross"][size // 2].all()
    assert patterns["stripe"].shape == (2, size)


@pytest.mark.parametrize("position", ["top_left", "top_right", "bottom_left", "bottom_right"])
def test_paste_artifact__fixed_corner_paints_exactly_the_pattern(position):
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 0.5, size=(3, 3, 16, 20)).astype(np.float32)
    spec = ArtifactConfig(shape="cross", size=5, intensity=0.9, position=position)
    marked = paste_artifact(images, spec, rng)

    expected_y0 = 2 if position.startswith("top") else 16 - 2 - 5
    expected_x0 = 2 if position.endswith("left") else 20 - 2 - 5
    boxes = artifact_boxes(3, 16, 20, spec, rng)
    assert (boxes == [expected_y0, expected_x0, expected_y0 + 5, expected_x0 + 5]).all()

    pattern = artifact_pattern(spec)
    expected = np.zeros((16, 20), dtype=bool)
    expected[expected_y0 : expected_y0 + 5, expected_x0 : expected_x0 + 5] = pattern
    for changed in _changed(images, marked):
        np.testing.assert_array_equal(changed, expected)
    # The same grey value on every channel.
    np.testing.assert_array_equal(marked[:, :, expected], np.float32(0.9))
    assert marked.dtype == np.float32


def test_paste_artifact__leaves_input_unchanged():
    images = np.zeros((2, 1, 12, 12), dtype=np.float32)
    marked = paste_artifact(images, ArtifactConfig(size=3), np.random.default_rng(0))
    assert images.sum() == 0
    assert marked.sum() == 2 * 9


def test_paste_artifact__random_position_matches_boxes_and_uses_every_corner():
    spec = ArtifactConfig(shape="square", size=4, intensity=1.0, position="random")
    images = np.zeros((40, 1, 16, 16), dtype=np.float32)
    marked = paste_artifact(images, spec, np.random.default_rng(3))
    boxes = artifact_boxes(40, 16, 16, spec, np.random.default_rng(3))

    for img, (y0, x0, y1, x1) in zip(marked[:, 0], boxes, strict=True):
        assert img[y0:y1, x0:x1].all()
        assert img.sum() == 16
    corners = {(y0 == 2, x0 == 2) for y0, x0, _, _ in boxes}
    assert len(corners) == len(CORNERS)


def test_paste_artifact__given_boxes_are_used():
    spec = ArtifactConfig(size=3, position="random")
    images = np.zeros((2, 1, 12, 12), dtype=np.float32)
    boxes = np.array([[1, 1, 4, 4], [8, 8, 11, 11]])
    marked = paste_artifact(images, spec, np.random.default_rng(0), boxes=boxes)
    assert marked[0, 0, 1:4, 1:4].all() and marked[1, 0, 8:11, 8:11].all()
    assert marked.sum() == 18


def test_artifact_boxes__small_images_use_a_one_pixel_margin():
    spec = ArtifactConfig(size=3, position="bottom_right")
    boxes = artifact_boxes(1, 10, 10, spec, np.random.default_rng(0))
    assert boxes.tolist() == [[6, 6, 9, 9]]


def test_artifact_boxes__mark_too_large__raises_with_fix():
    with pytest.raises(DataError, match="data.artifact.size <= 12"):
        artifact_boxes(1, 16, 16, ArtifactConfig(size=14), np.random.default_rng(0))


def test_paste_artifact__wrong_ndim__raises():
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        paste_artifact(np.zeros((16, 16), np.float32), ArtifactConfig(), np.random.default_rng(0))
