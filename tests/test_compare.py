"""Side-by-side trainings (vaekit.compare) and the VAE-against-IWAE protocols (vaekit.protocols)."""

import math

import pytest
import torch

import vaekit
from vaekit import compare, metrics, objectives, schedules
from vaekit.evaluation import protocols


def tiny_vae(seed=0):
    torch.manual_seed(seed)
    return vaekit.VAE.mlp((1, 4, 4), latent_dim=2, hidden=(6,))


def binary(n, seed=1):
    return (
        torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed)) < 0.4
    ).float()


def test_fit_each_trains_each_run_as_fit_would_and_per_run_kwargs_win(capsys):
    x = binary(64)
    setup = lambda lr: (tiny_vae(), lambda m, xb: -objectives.elbo(m, xb), dict(lr=lr))
    models, histories, seconds = compare.fit_each(
        setup, [1e-2, 1e-3], x, steps=8, batch_size=16, lr=5.0, progress=False
    )
    direct = tiny_vae()
    vaekit.fit(
        direct,
        lambda m, xb: -objectives.elbo(m, xb),
        x,
        steps=8,
        batch_size=16,
        lr=1e-2,
        progress=False,
    )
    for a, b in zip(
        models[1e-2].parameters(), direct.parameters()
    ):  # lr = 1e-2 from its setup, not the common 5.0
        assert torch.equal(a, b)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(models[1e-3].parameters(), direct.parameters())
    )
    assert (
        histories[1e-2].last["step"] == 8
        and set(seconds) == {1e-2, 1e-3}
        and all(s >= 0 for s in seconds.values())
    )
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("0.01: 8 steps in") and "loss" in out[0]


def test_fit_each_refuses_a_bad_setup():
    with pytest.raises(
        TypeError, match=r"setup\('a'\) must return \(model, objective\)"
    ):
        compare.fit_each(lambda name: tiny_vae(), ["a"], binary(8), steps=1)


def test_paired_difference_and_its_standard_error():
    a, b = torch.tensor([1.0, 2.0, 4.0, 7.0]), torch.tensor([0.0, 1.0, 1.0, 2.0])
    mean, se = compare.paired(a, b)
    d = torch.tensor([1.0, 1.0, 3.0, 5.0])
    assert mean == pytest.approx(2.5) and se == pytest.approx(d.std().item() / 2)
    with pytest.raises(ValueError, match="same length"):
        compare.paired(a, b[:3])


def test_score_matches_the_metrics_on_the_same_random_draws():
    m, x = tiny_vae(), binary(50)
    torch.manual_seed(3)
    r = compare.score(m, x, k=20, seed=7)
    torch.manual_seed(3)
    ev = metrics.evaluate_elbo(m, x)
    torch.manual_seed(7)
    ll = metrics.log_likelihood(m, x, k=20, progress=False)
    assert r["elbo"] == ev["elbo"] and r["kl"] == ev["kl"] and torch.equal(r["ll"], ll)
    assert (
        r["nll"] == pytest.approx(-ll.mean().item())
        and r["active"] == metrics.active_units(m, x)[0]
    )
    assert r["kl_dims"].sum().item() == pytest.approx(
        ev["kl"], rel=1e-5
    )  # analytic KL, split per dimension
    assert r["nll"] <= -r["elbo"] + 0.5


def test_score_each_pairs_every_model_with_the_reference():
    models, x = {"a": tiny_vae(0), "b": tiny_vae(1)}, binary(40)
    res = compare.score_each(models, x, k=10, seed=0, reference="a", elbo=False)
    assert res["a"]["dnll"] == 0 and res["a"]["se"] == 0 and "elbo" not in res["a"]
    mean, se = compare.paired(-res["b"]["ll"], -res["a"]["ll"])
    assert res["b"]["dnll"] == pytest.approx(mean, abs=1e-5) and res["b"][
        "se"
    ] == pytest.approx(se, rel=1e-4)
    assert res["b"]["dnll"] == pytest.approx(
        res["b"]["nll"] - res["a"]["nll"], abs=1e-4
    )
    with pytest.raises(KeyError, match="reference must be one of"):
        compare.score_each(models, x, k=2, reference="c")


def test_markdown_table():
    table = compare.markdown_table(
        ["name", "value"], [["a", 1.5], ["b", 2]], align="lr"
    )
    assert table.splitlines() == [
        "| name | value |",
        "| --- | ---: |",
        "| a | 1.5 |",
        "| b | 2 |",
    ]
    with pytest.raises(ValueError, match="every row must have 2 cells"):
        compare.markdown_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="align must be one 'l' or 'r' per column"):
        compare.markdown_table(["a", "b"], [], align="x")


def test_protocols_hold_the_papers_numbers_and_take_overrides():
    paper = protocols.protocol("paper")
    assert (
        paper["steps"] == 9_840_000
        and paper["batch_size"] == 20
        and paper["adam_eps"] == 1e-4
    )
    assert (
        paper["hidden"] == (200, 200)
        and paper["latent_dim"] == 50
        and paper["activation"] == "tanh"
    )
    fast = protocols.protocol("fast", steps=10, n_test=None)
    assert (
        fast["steps"] == 10
        and fast["n_test"] == 1000
        and protocols.PROTOCOLS["fast"]["steps"] == 600
    )
    fast["hidden"] = (1,)
    assert protocols.PROTOCOLS["fast"]["hidden"] == (400,)  # a copy
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocols.protocol("slow")
    assert set(protocols.PROTOCOLS["paper"]) == set(
        protocols.PROTOCOLS["fast"]
    )  # every override works on both
    with pytest.raises(ValueError, match="needs a pretrain_lr"):
        protocols.protocol("paper", pretrain_steps=100)
    assert (
        protocols.protocol("paper", pretrain_steps=100, pretrain_lr=3e-3)["pretrain_lr"]
        == 3e-3
    )
    with pytest.raises(ValueError, match=r"overrides \['stepz'\]"):
        protocols.protocol("fast", stepz=3)


def test_protocol_model_schedule_and_optimizer():
    cfg = protocols.protocol("fast")
    a, b = protocols.build_model(cfg, seed=4), protocols.build_model(cfg, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.latent_dim == 50 and sum(p.numel() for p in a.parameters()) == (
        784 * 400 + 400
    ) + (400 * 100 + 100) + (50 * 400 + 400) + (400 * 784 + 784)
    sched = protocols.lr_schedule(cfg, 100)
    assert isinstance(sched, schedules.ExponentialLR) and sched.lr_at(
        0
    ) == pytest.approx(1e-3)
    assert sched.lr_at(100) == pytest.approx(1e-4, rel=1e-6)
    burda = protocols.lr_schedule(protocols.protocol("paper"), 3280)
    assert isinstance(burda, schedules.StepwiseLR) and burda.lr_at(0) == pytest.approx(
        1e-3
    )
    opt = protocols.optimizer(cfg, a, sched)
    assert opt.param_groups[0]["eps"] == 1e-8 and opt.param_groups[0][
        "lr"
    ] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="cfg\\['schedule'\\] must be"):
        protocols.lr_schedule(dict(cfg, schedule="cosine"), 10)


def test_paired_draws_of_two_estimators():
    g = torch.Generator().manual_seed(0)
    a = 1.0 + 2.0 * torch.randn(
        4000, 3, generator=g, dtype=torch.float64
    )  # same mean, A twice as noisy
    b = 1.0 + torch.randn(4000, 3, generator=g, dtype=torch.float64)
    r = compare.paired_draws(a, b)
    assert r["diff"].shape == (3,) and abs(r["diff"].mean().item()) < 4 * r["se"]
    assert r["se"] == pytest.approx(math.sqrt(5 / 4000) / math.sqrt(3), rel=0.05)
    assert r["std_a"] == pytest.approx(2.0, rel=0.05) and r["std_b"] == pytest.approx(
        1.0, rel=0.05
    )
    assert (
        abs(compare.paired_draws(a + 0.5, b)["diff"].mean().item() - 0.5) < 4 * r["se"]
    )
    with pytest.raises(ValueError, match=r"\[R, B\] with R >= 2"):
        compare.paired_draws(a[:1], b[:1])


def test_elbo_draws_estimators_a_and_b_agree_in_expectation():
    m, x = tiny_vae(), binary(5)
    a, b = (
        objectives.elbo_draws(m, x, 400, analytic_kl=False),
        objectives.elbo_draws(m, x, 400),
    )
    assert a.shape == b.shape == (400, 5)
    r = compare.paired_draws(a, b)
    assert (
        abs(r["diff"].mean().item()) < 4 * r["se"] and r["std_a"] > 0 and r["std_b"] > 0
    )
    torch.manual_seed(1)
    first = objectives.elbo_draws(m, x, 2)
    torch.manual_seed(1)
    assert torch.equal(
        first[1], torch.stack([objectives.elbo(m, x) for _ in range(2)])[1]
    )
    with pytest.raises(ValueError, match="reps must be an int >= 2"):
        objectives.elbo_draws(m, x, 1)
