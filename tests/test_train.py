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
    hist = fit(model, mse, (x, y), epochs=30, batch_size=64, lr=0.05, progress=False, device="cpu")
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

    hist = fit(model, objective, (x, y), epochs=3, progress=False, device="cpu",
               evaluate=lambda m: {"test_mse": mse(m, x, y).mean().item()})
    assert {"loss", "abs_error", "test_mse"} <= set(hist.keys())
    assert all(math.isfinite(v) for v in hist["test_mse"])


def test_steps_limit():
    x, y = regression_problem()
    hist = fit(torch.nn.Linear(3, 1), mse, (x, y), steps=10, batch_size=64, progress=False, device="cpu")
    assert hist.last["step"] == 10


def test_interrupted_run_resumes_from_checkpoint_exactly(tmp_path):
    x = vaekit.data.embedded_digits("train").images[:512]

    def objective(m, xb):
        return -vaekit.elbo(m, xb)

    def model():
        torch.manual_seed(1)
        return vaekit.VAE.mlp(latent_dim=4, hidden=(32,))

    straight = model()
    fit(straight, objective, x, epochs=4, batch_size=64, transform=vaekit.data.binarize, seed=5,
        progress=False, device="cpu")

    class Interrupt:
        def on_epoch_end(self, state):
            if state.epoch == 2:
                raise KeyboardInterrupt

    ckpt = tmp_path / "run.pt"
    first = model()
    with pytest.raises(KeyboardInterrupt):
        fit(first, objective, x, epochs=4, batch_size=64, transform=vaekit.data.binarize, seed=5,
            progress=False, device="cpu", checkpoint=ckpt, callbacks=[Interrupt()])
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp"))
    resumed = model()
    hist = fit(resumed, objective, x, epochs=4, batch_size=64, transform=vaekit.data.binarize, seed=5,
               progress=False, device="cpu", checkpoint=ckpt)
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
        fit(model, objective, (x, y), epochs=5, batch_size=64, progress=False, check_every=3, device="cpu")


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "epochs or steps"),
    (dict(epochs=0), "epochs must be a positive int"),
    (dict(epochs=1, batch_size=-1), "batch_size must be a positive int"),
    (dict(epochs=1, optimizer="adagrad"), "optimizer must be one of"),
])
def test_bad_arguments_are_named(kwargs, message):
    x, y = regression_problem()
    with pytest.raises(ValueError, match=message):
        fit(torch.nn.Linear(3, 1), mse, (x, y), progress=False, device="cpu", **kwargs)


def test_bad_data_is_named():
    with pytest.raises(TypeError, match="data must be a tensor"):
        fit(torch.nn.Linear(3, 1), mse, [[1.0, 2.0]], epochs=1, progress=False)
    with pytest.raises(ValueError, match="same length"):
        fit(torch.nn.Linear(3, 1), mse, (torch.zeros(4, 3), torch.zeros(5, 1)), epochs=1, progress=False)


def test_objective_must_return_loss():
    x, y = regression_problem()
    with pytest.raises(TypeError, match="'loss' entry"):
        fit(torch.nn.Linear(3, 1), lambda m, a, b: {"nope": a.sum()}, (x, y), epochs=1, progress=False, device="cpu")
