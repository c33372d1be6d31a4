"""MIG and the FactorVAE score against exact answers on codes built from the true factors."""

import math

import numpy as np
import pytest
import torch

from vaekit import shapes
from vaekit.evaluation import disentanglement as dis


@pytest.fixture(scope="module")
def data():
    return shapes.generate(size=16, n_scale=3, n_rotation=4, n_position=5)


def standardized(factors):
    f = factors.double()
    return (f - f.mean(0)) / f.std(0)


def test_discretize_equal_width_bins():
    codes = torch.tensor(
        [[0.0, 5.0], [0.049, 5.0], [0.05, 5.0], [0.5, 5.0], [0.999, 5.0], [1.0, 5.0]]
    )
    binned = dis.discretize(codes, bins=20)
    assert binned[:, 0].tolist() == [
        0,
        0,
        1,
        10,
        19,
        19,
    ]  # width (max - min) / 20; the max in the last bin
    assert binned[:, 1].tolist() == [0] * 6  # a constant column: one bin
    ref = (
        np.digitize(codes[:, 0].numpy(), np.histogram(codes[:, 0].numpy(), 20)[1][:-1])
        - 1
    )  # numpy's histogram edges
    assert binned[:, 0].tolist() == ref.tolist()
    assert dis.discretize(torch.randn(1000, 3), bins=7).unique().tolist() == list(
        range(7)
    )


def test_mutual_information_and_entropy_exact():
    a = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert dis.entropy(a) == pytest.approx(math.log(4), abs=1e-12)
    assert dis.mutual_information(a, a) == pytest.approx(math.log(4), abs=1e-12)
    assert dis.mutual_information(a, a // 2) == pytest.approx(
        math.log(2), abs=1e-12
    )  # knows half of it
    assert dis.mutual_information(a, torch.tensor([0, 1] * 4)) == pytest.approx(
        0.0, abs=1e-12
    )  # independent
    # a 2x2 joint with p = [[0.4, 0.1], [0.1, 0.4]]: I = sum p log(p / 0.25)
    pairs = [(0, 0)] * 4 + [(0, 1)] + [(1, 0)] + [(1, 1)] * 4
    x, y = torch.tensor(pairs).T
    exact = 2 * 0.4 * math.log(0.4 / 0.25) + 2 * 0.1 * math.log(0.1 / 0.25)
    assert dis.mutual_information(x, y) == pytest.approx(exact, abs=1e-12)


def test_mig_true_factors_is_one(data):
    result = dis.mig(data.factors, data.classes)
    assert result.score == pytest.approx(1.0, abs=1e-12)
    assert result.best.tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(
        result.entropies,
        torch.tensor([math.log(n) for n in data.sizes], dtype=torch.float64),
    )
    assert torch.allclose(result.mi.diagonal(), result.entropies)
    codes = (
        -3 * data.factors[:, [2, 0, 4, 1, 3]] + 7
    )  # rescaled, shifted, reordered: still 1
    assert dis.mig(codes, data.classes).score == pytest.approx(1.0, abs=1e-12)
    noise = torch.randn(len(data), 1, generator=torch.Generator().manual_seed(0))
    # a pure-noise dimension: the plug-in MI of 20 bins against a factor on 900 images is biased up by about
    # (20 - 1)(values - 1) / (2 * 900) nats, a few hundredths, which the gaps lose
    assert 0.95 < dis.mig(torch.cat([codes, noise], 1), data.classes).score < 1.0


def test_mig_rotated_factors_scores_less(data):
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
        assert dis.mig(standardized(data.factors) @ q, data.classes).score < 0.6
    # a 45-degree rotation of two factors: each rotated dimension knows as much about x as about y
    z = standardized(data.factors)
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    mixed = z.clone()
    mixed[:, 3], mixed[:, 4] = c * z[:, 3] - s * z[:, 4], s * z[:, 3] + c * z[:, 4]
    result = dis.mig(mixed, data.classes)
    assert result.gaps[:3].tolist() == pytest.approx([1, 1, 1], abs=1e-12)
    assert (
        result.gaps[3:].max() < 0.15
    )  # x and y: two equally informative dimensions, a gap near 0
    assert 0.6 <= result.score < 0.6 + 2 * 0.15 / 5


def test_mig_constant_and_duplicated_codes(data):
    n = len(data)
    assert dis.mig(torch.zeros(n, 4), data.classes).score == 0.0
    one = torch.zeros(n, 4)
    one[:, 0] = data.factors[:, 3]  # knows x exactly, nothing else
    result = dis.mig(one, data.classes)
    assert result.score == pytest.approx(1 / 5, abs=1e-12)
    assert result.gaps.tolist() == pytest.approx([0, 0, 0, 1, 0], abs=1e-12)
    dup = one.clone()
    dup[:, 1] = (
        2 * data.factors[:, 3]
    )  # two dimensions both copy x: the gap is I - I = 0
    assert dis.mig(dup, data.classes).score == pytest.approx(0.0, abs=1e-12)
    coarse = torch.zeros(n, 2)
    coarse[:, 0] = (
        data.classes[:, 3] >= 3
    ).double()  # x known only as left or right of a threshold
    p = 2 / 5  # 2 of the 5 positions are at or beyond index 3
    expected = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(5) / 5
    assert dis.mig(coarse, data.classes).score == pytest.approx(expected, abs=1e-12)


def test_mig_discretisation_matters(data):
    """With fewer bins than a factor has values, even the factor itself loses information."""
    codes = data.factors[:, [3, 4]]  # x and y, 5 values each
    classes = data.classes[:, [3, 4]]
    assert dis.mig(codes, classes, bins=20).score == pytest.approx(1.0, abs=1e-12)
    two = dis.mig(
        codes, classes, bins=2
    )  # 5 evenly spaced values into 2 bins: 3 and 2 values
    p = 3 / 5
    h2 = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert two.score == pytest.approx(h2 / math.log(5), abs=1e-12)


def test_factor_vae_score_exact(data):
    n, g = len(data), torch.Generator().manual_seed(0)
    assert dis.factor_vae_score(data.factors, data.classes, generator=g).score == 1.0
    assert (
        dis.factor_vae_score(torch.zeros(n, 3), data.classes, generator=g).score == 0.0
    )
    one = torch.zeros(n, 4)
    one[:, 0] = data.factors[:, 3]
    result = dis.factor_vae_score(one, data.classes, n_votes=50, generator=g)
    assert result.score == pytest.approx(1 / 5) and result.active.tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert result.votes[0].tolist() == [50] * 5
    dup = one.clone()
    dup[:, 1] = data.factors[
        :, 3
    ]  # two copies of x: every vote goes to the first, one factor in five is right
    assert dis.factor_vae_score(dup, data.classes, generator=g).score == pytest.approx(
        1 / 5
    )
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    rotated = dis.factor_vae_score(
        standardized(data.factors) @ q, data.classes, generator=g
    ).score
    assert 0.2 < rotated < 0.95


def test_codes_that_need_a_gradient_or_another_dtype(data):
    codes = data.factors.clone().requires_grad_(True)
    assert dis.mig(codes, data.classes).score == pytest.approx(1.0, abs=1e-12)
    assert dis.mig(data.factors.half(), data.classes).score == pytest.approx(
        1.0, abs=1e-12
    )


def test_bad_input(data):
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        dis.mig(data.factors[:, :1], data.classes)
    with pytest.raises(ValueError, match="integer class indices"):
        dis.mig(data.factors, data.factors)
    with pytest.raises(ValueError, match="one row per image"):
        dis.mig(data.factors[:10], data.classes)
    with pytest.raises(ValueError, match="single value"):
        dis.mig(data.factors, torch.zeros(len(data), 2, dtype=torch.long))


def test_figures_show_every_seed_and_every_cell(data):
    from vaekit.figures import factors as factor_figures

    values = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.9]])
    fig = factor_figures.seed_panels(
        [1, 4], {"MIG": (values, "MIG"), "error": (values * 10, "nats")}, "t"
    )
    means = [t for t in fig.data if t.name == "mean ± sd over seeds"]
    assert (
        len(means) == 2
        and np.allclose(means[0].y, [0.2, 0.6])
        and np.allclose(means[0].error_y.array, values.std(1))
    )
    assert [t.name for t in fig.data[1:4]] == [
        "seed 1",
        "seed 2",
        "seed 3",
    ] and np.allclose(fig.data[3].y, [0.3, 0.9])
    with pytest.raises(ValueError, match="shape"):
        factor_figures.seed_panels([1, 4, 8], {"MIG": (values, "MIG")}, "t")
    result = dis.mig(data.factors, data.classes)
    fig = factor_figures.information_matrices(
        {"truth": result.mi / result.entropies}, data.names, "t"
    )
    assert np.allclose(np.asarray(fig.data[0].z), np.eye(5)) and list(
        fig.data[0].x
    ) == list(data.names)
