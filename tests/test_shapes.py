"""The shapes generator: every combination once, independent factors, each factor rendered as it says."""

import math

import pytest
import torch

from vaekit import shapes
from vaekit.evaluation.disentanglement import entropy, mutual_information


@pytest.fixture(scope="module")
def small():
    return shapes.generate(size=24, n_scale=3, n_rotation=4, n_position=5)


def centroid(img):
    """(column, row from the bottom) of the lit pixels of ``img [1, H, W]``, in pixels."""
    h = img.shape[-2]
    rows, cols = img[0].nonzero(as_tuple=True)
    return cols.double().mean() + 0.5, (h - rows.double()).mean() - 0.5


def test_count_order_and_every_combination_once(small):
    assert len(small) == 3 * 3 * 4 * 5 * 5 == small.images.shape[0]
    assert small.images.shape[1:] == (1, 24, 24) and small.sizes == [3, 3, 4, 5, 5]
    assert set(small.images.unique().tolist()) == {0.0, 1.0}
    assert len({tuple(c) for c in small.classes.tolist()}) == len(small)
    assert torch.equal(
        small.index(small.classes), torch.arange(len(small))
    )  # shape slowest, y fastest
    for k, values in enumerate(small.values):
        assert torch.equal(small.factors[:, k], values[small.classes[:, k]])
    assert torch.allclose(small.values[1], torch.tensor([0.5, 0.75, 1.0]))
    assert torch.allclose(small.values[2], torch.arange(4) * (math.pi / 2))
    assert torch.allclose(small.values[3], torch.linspace(0, 1, 5))
    assert (
        len(shapes.generate(size=16, n_scale=2, n_rotation=3, n_position=4))
        == 3 * 2 * 3 * 4 * 4
    )


def test_factors_are_independent_and_uniform(small):
    c = small.classes
    for k in range(5):
        counts = torch.bincount(c[:, k])
        assert (counts == len(small) // small.sizes[k]).all()  # uniform
        assert entropy(c[:, k]) == pytest.approx(math.log(small.sizes[k]), abs=1e-12)
        for j in range(k):
            assert mutual_information(c[:, j], c[:, k]) == pytest.approx(0.0, abs=1e-12)
            joint = torch.bincount(
                c[:, j] * small.sizes[k] + c[:, k]
            )  # every pair of values equally often
            assert (joint == len(small) // (small.sizes[j] * small.sizes[k])).all()


def test_deterministic_and_any_resolution():
    a, b = (
        shapes.generate(size=16, n_position=3),
        shapes.generate(size=16, n_position=3),
    )
    assert torch.equal(a.images, b.images)
    big = shapes.render([0], [1.0], [0.0], [0.5], [0.5], size=64)
    small = shapes.render([0], [1.0], [0.0], [0.5], [0.5], size=32)
    assert float(big.sum()) == pytest.approx(
        4 * float(small.sum()), rel=0.1
    )  # the same square, four times the pixels


def test_position_moves_the_shape():
    left = shapes.render([1], [1.0], [0.0], [0.0], [0.5], size=32)[0]
    right = shapes.render([1], [1.0], [0.0], [1.0], [0.5], size=32)[0]
    low = shapes.render([1], [1.0], [0.0], [0.5], [0.0], size=32)[0]
    high = shapes.render([1], [1.0], [0.0], [0.5], [1.0], size=32)[0]
    span = 32 * (1 - 2 * shapes._margin(0.18))  # pixels between the extreme centres
    assert float(centroid(right)[0] - centroid(left)[0]) == pytest.approx(span, abs=1.0)
    assert float(centroid(high)[1] - centroid(low)[1]) == pytest.approx(
        span, abs=1.0
    )  # y counts upwards
    assert float(centroid(right)[1] - centroid(left)[1]) == pytest.approx(0.0, abs=0.5)
    for img in (
        left,
        right,
        low,
        high,
    ):  # the whole shape stays inside: the same area up to the pixel grid
        assert float(img.sum()) == pytest.approx(float(left.sum()), rel=0.1)


def test_scale_grows_the_area_as_its_square():
    for s in range(3):
        area = shapes.render(
            [s, s], [0.5, 1.0], [0.0, 0.0], [0.5, 0.5], [0.5, 0.5], size=64
        ).sum((1, 2, 3))
        assert float(area[1] / area[0]) == pytest.approx(4.0, rel=0.12)
    half = 0.18 * 64  # the square of scale 1: side 2 * extent * size
    square = shapes.render([0], [1.0], [0.0], [0.5], [0.5], size=64).sum()
    assert float(square) == pytest.approx((2 * half) ** 2, rel=0.1)
    ellipse = shapes.render([1], [1.0], [0.0], [0.5], [0.5], size=64).sum()
    assert float(ellipse) == pytest.approx(math.pi * half * half / 2, rel=0.1)


def test_rotation_turns_the_shape():
    def axis(img):  # angle of the principal axis of the lit pixels
        rows, cols = img[0].nonzero(as_tuple=True)
        x, y = cols.double(), -rows.double()
        x, y = x - x.mean(), y - y.mean()
        cov = torch.stack(
            [
                torch.stack([(x * x).mean(), (x * y).mean()]),
                torch.stack([(x * y).mean(), (y * y).mean()]),
            ]
        )
        vec = torch.linalg.eigh(cov).eigenvectors[:, -1]
        return math.atan2(vec[1], vec[0]) % math.pi

    for angle in (0.0, math.pi / 6, math.pi / 3, math.pi / 2):
        img = shapes.render([1], [1.0], [angle], [0.5], [0.5], size=64)[0]
        assert (
            min(abs(axis(img) - angle), math.pi - abs(axis(img) - angle)) < 0.06
        )  # the ellipse's long axis, anticlockwise
    sq0 = shapes.render([0], [1.0], [0.0], [0.5], [0.5], size=64)
    sq90 = shapes.render([0], [1.0], [math.pi / 2], [0.5], [0.5], size=64)
    sq45 = shapes.render([0], [1.0], [math.pi / 4], [0.5], [0.5], size=64)
    assert (sq0 != sq90).float().mean() < 0.01 and (
        sq0 != sq45
    ).float().mean() > 0.02  # a square repeats every 90 degrees
    heart = shapes.render(
        [2, 2], [1.0, 1.0], [0.0, math.pi], [0.5, 0.5], [0.5, 0.5], size=64
    )
    assert (
        torch.equal(heart[1, 0], heart[0, 0].flip(0, 1))
        or (heart[1] != heart[0].flip(1, 2)).float().mean() < 0.01
    )
    assert (heart[1] != heart[0]).float().mean() > 0.02  # a heart does not


def test_shapes_differ(small):
    one = (
        small.classes[:, 1:].eq(small.classes[0, 1:]).all(1)
    )  # the same scale, rotation, position
    imgs = small.images[one]
    assert (
        len(imgs) == 3
        and not torch.equal(imgs[0], imgs[1])
        and not torch.equal(imgs[1], imgs[2])
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        shapes.generate(size=0)
    with pytest.raises(ValueError, match="max_rotation"):
        shapes.generate(max_rotation=7.0)
    with pytest.raises(ValueError, match="shape must be"):
        shapes.render([3], [1.0], [0.0], [0.5], [0.5])
    with pytest.raises(ValueError, match="same length"):
        shapes.render([0, 1], [1.0], [0.0], [0.5], [0.5])
