"""The training loop: it learns, resumes exactly from a checkpoint, stops on NaN, checks its input."""

import math

import pytest
import torch

import vaekit
from vaekit.train import NonFiniteLossError, fit


def regression_problem(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    w = torch.tensor([[1.5], [-2.0], [0.5]])
    y = x @ w + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def mse(model, x, y):
    return ((model(x) - y) ** 2).sum(-1)


def test_fit_learns_and_records_history():
    x, y = regression_problem()
    model = torch.nn.Linear(3, 1)
    hist = fit(
        model,
        mse,
        (x, y),
        epochs=30,
        batch_size=64,
        lr=0.05,
        progress=False,
        device="cpu",
    )
    assert len(hist) == 30 and hist["epoch"] == list(range(1, 31))
    assert hist["loss"][-1] < 0.02 < hist["loss"][0]
    assert hist.last["step"] == 30 * (512 // 64)
    assert torch.allclose(model.weight, torch.tensor([[1.5, -2.0, 0.5]]), atol=0.05)


def test_dict_objective_logs_every_entry_and_evaluate_runs():
    x, y = regression_problem()
    model = torch.nn.Linear(3, 1)

    def objective(m, xb, yb):
        err = mse(m, xb, yb)
        return {"loss": err, "abs_error": err.sqrt()}

    hist = fit(
        model,
        objective,
        (x, y),
        epochs=3,
        progress=False,
        device="cpu",
        evaluate=lambda m: {"test_mse": mse(m, x, y).mean().item()},
    )
    assert {"loss", "abs_error", "test_mse"} <= set(hist.keys())
    assert all(math.isfinite(v) for v in hist["test_mse"])


def test_steps_limit():
    x, y = regression_problem()
    hist = fit(
        torch.nn.Linear(3, 1),
        mse,
        (x, y),
        steps=10,
        batch_size=64,
        progress=False,
        device="cpu",
    )
    assert hist.last["step"] == 10


def test_interrupted_run_resumes_from_checkpoint_exactly(tmp_path):
    x = vaekit.data.embedded_digits("train").images[:512]

    def objective(m, xb):
        return -vaekit.elbo(m, xb)

    def model():
        torch.manual_seed(1)
        return vaekit.VAE.mlp(latent_dim=4, hidden=(32,))

    straight = model()
    fit(
        straight,
        objective,
        x,
        epochs=4,
        batch_size=64,
        transform=vaekit.data.binarize,
        seed=5,
        progress=False,
        device="cpu",
    )

    class Interrupt:
        def on_epoch_end(self, state):
            if state.epoch == 2:
                raise KeyboardInterrupt

    ckpt = tmp_path / "run.pt"
    first = model()
    with pytest.raises(KeyboardInterrupt):
        fit(
            first,
            objective,
            x,
            epochs=4,
            batch_size=64,
            transform=vaekit.data.binarize,
            seed=5,
            progress=False,
            device="cpu",
            checkpoint=ckpt,
            callbacks=[Interrupt()],
        )
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp"))
    resumed = model()
    hist = fit(
        resumed,
        objective,
        x,
        epochs=4,
        batch_size=64,
        transform=vaekit.data.binarize,
        seed=5,
        progress=False,
        device="cpu",
        checkpoint=ckpt,
    )
    assert hist["epoch"] == [1, 2, 3, 4]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), "resuming must continue the same run"


def test_nan_guard_names_step_and_last_finite_loss():
    x, y = regression_problem()
    model = torch.nn.Linear(3, 1)

    def objective(m, xb, yb):
        loss = mse(m, xb, yb)
        objective.calls += 1
        return loss * float("nan") if objective.calls == 7 else loss

    objective.calls = 0
    with pytest.raises(NonFiniteLossError, match=r"at step 7; last finite loss \d"):
        fit(
            model,
            objective,
            (x, y),
            epochs=5,
            batch_size=64,
            progress=False,
            check_every=3,
            device="cpu",
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "epochs or steps"),
        (dict(epochs=0), "epochs must be a positive int"),
        (dict(epochs=1, batch_size=-1), "batch_size must be a positive int"),
        (dict(epochs=1, optimizer="adagrad"), "optimizer must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    x, y = regression_problem()
    with pytest.raises(ValueError, match=message):
        fit(torch.nn.Linear(3, 1), mse, (x, y), progress=False, device="cpu", **kwargs)


def test_bad_data_is_named():
    with pytest.raises(TypeError, match="data must be a tensor"):
        fit(torch.nn.Linear(3, 1), mse, [[1.0, 2.0]], epochs=1, progress=False)
    with pytest.raises(ValueError, match="same length"):
        fit(
            torch.nn.Linear(3, 1),
            mse,
            (torch.zeros(4, 3), torch.zeros(5, 1)),
            epochs=1,
            progress=False,
        )


def test_objective_must_return_loss():
    x, y = regression_problem()
    with pytest.raises(TypeError, match="'loss' entry"):
        fit(
            torch.nn.Linear(3, 1),
            lambda m, a, b: {"nope": a.sum()},
            (x, y),
            epochs=1,
            progress=False,
            device="cpu",
        )


# --------------------------------------------------------------------------- checkpoints that belong to their run


def _vae_run(ckpt, x, **kwargs):
    torch.manual_seed(1)
    model = vaekit.VAE.mlp(latent_dim=3, hidden=(16,))
    args = dict(
        epochs=1,
        batch_size=32,
        seed=0,
        lr=1e-3,
        progress=False,
        device="cpu",
        checkpoint=ckpt,
    )
    args.update(kwargs)
    hist = fit(
        model,
        args.pop("objective", lambda m, xb: -vaekit.elbo(m, xb)),
        args.pop("data", x),
        **args,
    )
    return model, hist


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(batch_size=16), "batch_size"),
        (dict(seed=1), "seed"),
        (dict(lr=1e-2), "optimizer"),
        (dict(optimizer="sgd"), "optimizer"),
        (dict(objective=lambda m, xb: -vaekit.iwae_bound(m, xb, 2)), "objective"),
        (dict(transform=vaekit.data.binarize), "transform"),
        (dict(data="other"), "data"),
        (dict(data="fewer"), "data"),
    ],
)
def test_checkpoint_of_another_run_is_refused_naming_the_difference(
    tmp_path, change, named
):
    x = vaekit.data.embedded_digits("train").images[:128]
    ckpt = tmp_path / "run.pt"
    _vae_run(ckpt, x)
    if change.get("data") == "other":
        change = dict(data=vaekit.data.embedded_digits("train").images[128:256])
    elif change.get("data") == "fewer":
        change = dict(data=x[:96])
    with pytest.raises(
        vaekit.train.CheckpointMismatchError,
        match=rf"run\.pt was written by a different run: {named}",
    ):
        _vae_run(ckpt, x, epochs=2, **change)
    # the same run resumes (one more epoch), and resume="force" overrides a difference with a warning
    _, hist = _vae_run(ckpt, x, epochs=2)
    assert hist["epoch"] == [1, 2]
    with pytest.warns(UserWarning, match="resuming anyway"):
        _, hist = _vae_run(ckpt, x, epochs=3, resume="force", **change)
    assert hist["epoch"] == [1, 2, 3]


def test_checkpoint_of_another_model_or_without_fingerprint_is_refused(tmp_path):
    x = vaekit.data.embedded_digits("train").images[:64]
    ckpt = tmp_path / "run.pt"
    _vae_run(ckpt, x)
    other = vaekit.VAE.mlp(latent_dim=5, hidden=(16,))
    with pytest.raises(
        vaekit.train.CheckpointMismatchError, match="model: checkpoint 'VAE with"
    ):
        fit(
            other,
            lambda m, xb: -vaekit.elbo(m, xb),
            x,
            epochs=2,
            batch_size=32,
            progress=False,
            device="cpu",
            checkpoint=ckpt,
        )
    saved = torch.load(ckpt, weights_only=False)
    del saved["fingerprint"]  # as an older vaekit wrote it
    torch.save(saved, ckpt)
    with pytest.raises(vaekit.train.CheckpointMismatchError, match="no fingerprint"):
        _vae_run(ckpt, x, epochs=2)
    _, hist = _vae_run(ckpt, x, epochs=2, resume=False)  # start afresh, overwriting it
    assert hist["epoch"] == [1, 2]
    with pytest.raises(ValueError, match="resume must be True, False or 'force'"):
        _vae_run(ckpt, x, resume="yes")


def test_resume_restores_callback_state_so_kl_warmup_continues_exactly(tmp_path):
    x = vaekit.data.embedded_digits("train").images[:256]

    def run(checkpoint=None, stop_after=None):
        torch.manual_seed(1)
        model = vaekit.VAE.mlp(latent_dim=4, hidden=(32,))
        warm = vaekit.objectives.KLWarmup(steps=20)
        betas = []

        class Interrupt:
            def on_epoch_end(self, state):
                if state.epoch == stop_after:
                    raise KeyboardInterrupt

        def objective(m, xb):
            betas.append(warm.beta)
            return -vaekit.elbo(m, xb, beta=warm.beta)

        fit(
            model,
            objective,
            x,
            epochs=4,
            batch_size=32,
            seed=3,
            progress=False,
            device="cpu",
            checkpoint=checkpoint,
            callbacks=[warm, Interrupt()],
        )
        return model, betas

    straight, betas_straight = run()
    ckpt = tmp_path / "warm.pt"
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, stop_after=2)
    assert torch.load(ckpt, weights_only=False)["callbacks"] == [
        ("KLWarmup", {"step": 8})
    ]  # saved after epoch 1
    resumed, betas_resumed = run(ckpt)
    assert betas_resumed == betas_straight[8:], (
        "the resumed run must see the same KL weights"
    )
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    warm = vaekit.objectives.KLWarmup(steps=10)
    warm.load_state_dict({"step": 5})
    assert warm.state_dict() == {"step": 5} and warm.beta == 0.5


def test_stale_temporary_checkpoint_files_are_removed(tmp_path):
    x = vaekit.data.embedded_digits("train").images[:64]
    ckpt = tmp_path / "run.pt"
    stale = (
        tmp_path / "run.ptab3_x9zq.tmp"
    )  # what atomic_write leaves when the process is killed mid-save
    stale.write_bytes(b"half a checkpoint")
    unrelated = tmp_path / "other.ptab3_x9zq.tmp"
    unrelated.write_bytes(b"not ours")
    _vae_run(ckpt, x)
    assert ckpt.exists() and not stale.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other.ptab3_x9zq.tmp",
        "run.pt",
    ]


# --------------------------------------------------------------------------- objectives and arguments


@pytest.mark.parametrize("clip", [-1.0, 0, 0.0, float("inf"), float("nan"), True, "1"])
def test_clip_grad_must_be_positive(clip):
    x, y = regression_problem()
    with pytest.raises(ValueError, match="clip_grad must be a positive number"):
        fit(
            torch.nn.Linear(3, 1),
            mse,
            (x, y),
            epochs=1,
            clip_grad=clip,
            progress=False,
            device="cpu",
        )


def test_clip_grad_limits_the_step():
    x, y = regression_problem()
    model = torch.nn.Linear(3, 1)
    w0 = model.weight.detach().clone()
    fit(
        model,
        mse,
        (x, y),
        steps=1,
        batch_size=64,
        optimizer="sgd",
        lr=1.0,
        clip_grad=0.01,
        progress=False,
        device="cpu",
    )
    step = (model.weight.detach() - w0).norm()
    assert 0.005 < float(step) <= 0.0100001


def test_objective_must_return_one_value_per_example():
    x, y = regression_problem()
    with pytest.raises(
        ValueError, match=r"'loss' must have shape \[B\] = \[64\].*got shape \[64, 1\]"
    ):
        fit(
            torch.nn.Linear(3, 1),
            lambda m, a, b: (m(a) - b) ** 2,
            (x, y),
            epochs=1,
            batch_size=64,
            progress=False,
            device="cpu",
        )
    with pytest.raises(ValueError, match=r"'extra' must have shape \[B\]"):
        fit(
            torch.nn.Linear(3, 1),
            lambda m, a, b: {"loss": mse(m, a, b), "extra": a},
            (x, y),
            epochs=1,
            batch_size=64,
            progress=False,
            device="cpu",
        )
    hist = fit(
        torch.nn.Linear(3, 1),
        lambda m, a, b: mse(m, a, b).mean(),
        (x, y),
        epochs=1,
        batch_size=64,
        progress=False,
        device="cpu",
    )  # a scalar is fine
    assert len(hist) == 1


@pytest.mark.parametrize("key", ["loss", "step", "epoch", "seconds", "abs_error"])
def test_evaluate_may_not_overwrite_the_training_record(key):
    x, y = regression_problem()

    def objective(m, xb, yb):
        return {"loss": mse(m, xb, yb), "abs_error": mse(m, xb, yb).sqrt()}

    with pytest.raises(ValueError, match=rf"evaluate\(model\) returned \['{key}'\]"):
        fit(
            torch.nn.Linear(3, 1),
            objective,
            (x, y),
            epochs=1,
            progress=False,
            device="cpu",
            evaluate=lambda m: {key: 0.0},
        )
    with pytest.raises(TypeError, match="evaluate\\(model\\) must return a dict"):
        fit(
            torch.nn.Linear(3, 1),
            objective,
            (x, y),
            epochs=1,
            progress=False,
            device="cpu",
            evaluate=lambda m: 1.0,
        )


def test_misspelt_history_key_names_the_keys():
    x, y = regression_problem()
    hist = fit(
        torch.nn.Linear(3, 1),
        mse,
        (x, y),
        epochs=2,
        progress=False,
        device="cpu",
        evaluate=lambda m: {"test_mse": 1.0},
        eval_every=2,
    )
    assert (
        math.isnan(hist["test_mse"][0]) and hist["test_mse"][1] == 1.0
    )  # logged in some epochs only
    with pytest.raises(
        KeyError,
        match=r"'los' is not in the history; it has \['epoch', 'step', 'seconds', 'loss'",
    ):
        hist["los"]


# --------------------------------------------------------------------------- the non-finite and divergence guard


def _adam_on_regression(steps, lr=0.05, **kwargs):
    x, y = regression_problem()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = vaekit.train.make_optimizer(model.parameters(), "adam", lr)
    fit(
        model,
        mse,
        (x, y),
        steps=steps,
        batch_size=64,
        optimizer=opt,
        progress=False,
        device="cpu",
        **kwargs,
    )
    return model, opt


def test_nan_in_the_data_leaves_the_model_at_its_last_finite_state():
    x, y = regression_problem()
    perm = torch.randperm(
        512, generator=torch.Generator().manual_seed(0)
    )  # fit's shuffle of the first epoch, seed 0
    bad_step = 6
    x[perm[(bad_step - 1) * 64 + 3], 1] = float("nan")  # one NaN in the batch of step 6
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = vaekit.train.make_optimizer(model.parameters(), "adam", 0.05)
    with pytest.raises(
        NonFiniteLossError,
        match=rf"loss became nan at step {bad_step}; last finite loss \d",
    ):
        fit(
            model,
            mse,
            (x, y),
            epochs=1,
            batch_size=64,
            optimizer=opt,
            progress=False,
            device="cpu",
            check_every=1,
        )
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # check_every=1: restored to exactly the state after the last finite step
    reference, ref_opt = _adam_on_regression(bad_step - 1)
    for a, b in zip(reference.parameters(), model.parameters()):
        assert torch.equal(a, b)
    assert int(opt.state_dict()["state"][0]["step"]) == bad_step - 1
    assert torch.equal(
        opt.state_dict()["state"][0]["exp_avg"],
        ref_opt.state_dict()["state"][0]["exp_avg"],
    )


def test_nan_guard_restores_the_last_checked_state():
    x, y = regression_problem()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)

    def objective(m, xb, yb):
        objective.calls += 1
        return mse(m, xb, yb) * (float("nan") if objective.calls == 8 else 1.0)

    objective.calls = 0
    with pytest.raises(
        NonFiniteLossError, match="at step 8; .* restored to their state after step 6"
    ):
        fit(
            model,
            objective,
            (x, y),
            epochs=2,
            batch_size=64,
            lr=0.05,
            progress=False,
            check_every=3,
            device="cpu",
        )
    reference, _ = _adam_on_regression(6)
    for a, b in zip(reference.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_divergence_trips_the_guard():
    with pytest.raises(
        NonFiniteLossError, match=r"loss diverged to .* past the bound .* at step \d+"
    ) as err:
        model, _ = _adam_on_regression(64, lr=1e6, check_every=8)
    x, y = regression_problem()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    start = float(mse(model, x, y).mean())
    with pytest.raises(NonFiniteLossError, match="diverged"):
        fit(
            model,
            mse,
            (x, y),
            steps=64,
            batch_size=64,
            optimizer="adam",
            lr=1e6,
            progress=False,
            device="cpu",
        )
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert float(mse(model, x, y).mean()) < 1e4 * (start + 1), (
        "the model is left before the blow-up"
    )
    assert "restored" in str(err.value)
    with pytest.raises(ValueError, match="divergence must be a positive number"):
        _adam_on_regression(1, divergence=0)
    # a healthy run never comes near the bound, and divergence=None turns the check off
    _adam_on_regression(64, divergence=None)
    _adam_on_regression(64)


# --------------------------------------------------------------------------- input checks on the first batch


def test_first_batch_is_checked_then_checks_are_off_in_the_loop():
    x = vaekit.data.embedded_digits("train").images[:64]
    model = vaekit.VAE.mlp(latent_dim=3, hidden=(16,))
    with pytest.raises(
        ValueError,
        match=r"x must lie in \[0, 1\] for a Bernoulli likelihood, got values in \[0, 255\]",
    ):
        fit(
            model,
            lambda m, xb: -vaekit.elbo(m, xb),
            255 * x,
            epochs=1,
            batch_size=32,
            progress=False,
            device="cpu",
        )
    with pytest.raises(
        TypeError,
        match="x has dtype torch.float64 but the model's parameters are torch.float32",
    ):
        fit(
            model,
            lambda m, xb: -vaekit.elbo(m, xb),
            x.double(),
            epochs=1,
            batch_size=32,
            progress=False,
            device="cpu",
        )
    seen = []

    def objective(m, xb):
        seen.append(vaekit.utils.value_checks_enabled())
        return -vaekit.elbo(m, xb)

    fit(
        model,
        objective,
        x,
        epochs=2,
        batch_size=16,
        progress=False,
        device="cpu",
        evaluate=lambda m: {
            "evaluated_with_checks": float(vaekit.utils.value_checks_enabled())
        },
    )
    assert seen == [True] + [False] * 7, (
        "value checks (a host sync each) run on the first batch only"
    )
    assert vaekit.utils.value_checks_enabled(), "fit restores the switch"


@pytest.mark.parametrize("stop", ["steps", "callback"])
def test_nan_in_the_last_steps_of_a_run_that_ends_mid_epoch_is_caught(stop):
    # steps (or a callback's stop) end the run in the middle of an epoch and of a check window:
    # the steps since the last check are checked too, so a NaN there is never returned silently
    x, y = regression_problem()  # 8 steps per epoch at batch size 64

    def objective(m, xb, yb):
        objective.calls += 1
        return mse(m, xb, yb) * (float("nan") if objective.calls == 3 else 1.0)

    class StopAt4:
        def on_step(self, state):
            state.stop = state.step == 4

    objective.calls = 0
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    limits = dict(steps=4) if stop == "steps" else dict(epochs=1, callbacks=[StopAt4()])
    with pytest.raises(
        NonFiniteLossError,
        match="loss became nan at step 3; .* restored to their state after step 0",
    ):
        fit(
            model,
            objective,
            (x, y),
            batch_size=64,
            lr=0.05,
            progress=False,
            device="cpu",
            **limits,
        )
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("failure", ["first batch", "later step", "interrupt"])
def test_value_checks_switch_is_restored_when_fit_raises(failure):
    x = vaekit.data.embedded_digits("train").images[:64]
    model = vaekit.VAE.mlp(latent_dim=3, hidden=(16,))

    def objective(m, xb):
        objective.calls += 1
        if failure == "later step" and objective.calls == 3:
            raise RuntimeError("objective failed")
        if failure == "interrupt" and objective.calls == 3:
            raise KeyboardInterrupt
        return -vaekit.elbo(m, xb)

    objective.calls = 0
    data = 255 * x if failure == "first batch" else x
    with pytest.raises((ValueError, RuntimeError, KeyboardInterrupt)):
        fit(
            model,
            objective,
            data,
            epochs=2,
            batch_size=16,
            progress=False,
            device="cpu",
        )
    assert objective.calls == (1 if failure == "first batch" else 3)
    assert vaekit.utils.value_checks_enabled(), (
        "a fit that raised leaves the value checks on"
    )
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        vaekit.elbo(model, 255 * x)


def test_checkpoint_of_a_lambda_or_partial_with_another_k_is_refused(tmp_path):
    # in a notebook every objective is a '<lambda>': what it binds and calls tells them apart
    import functools

    x = vaekit.data.embedded_digits("train").images[:64]
    loop = {}
    for k in (2, 5):
        loop[k] = lambda m, xb, k=k: -vaekit.iwae_bound(m, xb, k)
    _vae_run(tmp_path / "a.pt", x, objective=loop[2])
    with pytest.raises(
        vaekit.train.CheckpointMismatchError,
        match=r"objective: checkpoint .*<lambda> .*k=2.*now .*<lambda> .*k=5",
    ):
        _vae_run(tmp_path / "a.pt", x, epochs=2, objective=loop[5])
    _, hist = _vae_run(
        tmp_path / "a.pt",
        x,
        epochs=2,
        objective=lambda m, xb, k=2: -vaekit.iwae_bound(m, xb, k),
    )
    assert hist["epoch"] == [1, 2], "the same lambda, defined anew, resumes"
    _vae_run(tmp_path / "b.pt", x, objective=lambda m, xb: -vaekit.elbo(m, xb))
    with pytest.raises(
        vaekit.train.CheckpointMismatchError, match="objective: .*iwae_bound"
    ):
        _vae_run(
            tmp_path / "b.pt",
            x,
            epochs=2,
            objective=lambda m, xb: -vaekit.iwae_bound(m, xb, 2),
        )

    def negative(bound, m, xb, k=1):
        return -bound(m, xb, k)

    _vae_run(
        tmp_path / "c.pt",
        x,
        objective=functools.partial(negative, vaekit.iwae_bound, k=2),
    )
    with pytest.raises(
        vaekit.train.CheckpointMismatchError, match=r"objective: .*k=2.*k=5"
    ):
        _vae_run(
            tmp_path / "c.pt",
            x,
            epochs=2,
            objective=functools.partial(negative, vaekit.iwae_bound, k=5),
        )


def test_unreadable_checkpoint_or_bad_seed_is_named(tmp_path):
    x = vaekit.data.embedded_digits("train").images[:64]
    damaged = tmp_path / "run.pt"
    damaged.write_bytes(
        b"half a checkpoint"
    )  # e.g. copied in part, or written by another program
    with pytest.raises(
        ValueError,
        match=r"checkpoint .*run\.pt cannot be read as a fit checkpoint .*resume=False",
    ):
        _vae_run(damaged, x)
    torch.save({"weights": torch.zeros(3)}, damaged)
    with pytest.raises(
        ValueError,
        match=r"run\.pt cannot be read as a fit checkpoint \(ValueError: not a fit checkpoint",
    ):
        _vae_run(damaged, x, resume="force")
    _, hist = _vae_run(damaged, x, resume=False)  # starts afresh and overwrites it
    assert hist["epoch"] == [1] and "fingerprint" in torch.load(
        damaged, weights_only=False
    )
    with pytest.raises(ValueError, match="checkpoint must name a file, got the folder"):
        _vae_run(tmp_path, x)
    for seed in ("0", 1.5, True):
        with pytest.raises(
            TypeError, match=rf"seed must be an int or None, got {seed!r}"
        ):
            _vae_run(None, x, seed=seed)
