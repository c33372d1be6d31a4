"""One rule for every public entry point: bad input raises a ValueError or TypeError whose message
names the argument. A table lists, for each public function, a valid call; the test breaks one
argument at a time in every way its role allows (data: empty, integer, another dtype than the
model, 0-255 pixels and NaN where it is scored, not a tensor; labels: float, a column, out of range;
sizes and steps: 0, negative, a string, a fraction) and requires the error to name it. A walk over
the modules' public functions requires every function taking such an argument to be in the table
(or exempt, with the reason), so a new function cannot skip the checks unnoticed."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch

import vaekit
from vaekit import discretized
from vaekit.evaluation import compare, information, metrics, protocols
from vaekit.models.autoregressive import made_masks
from vaekit.inference import hmc, objectives, wake_sleep
from vaekit.models import dequantization, priors, ssvae, vq, vqvae
from vaekit.models.pixelcnn import PixelCNN, horizontal_mask, nll, vertical_mask
from vaekit.nets import DiscretizedLogisticDecoder
from vaekit.utils import check_labels, check_positive_number, input_checks

SHAPE = (1, 4, 4)


class Env:
    """Small models and valid inputs, built once."""

    def __init__(self):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1)
        self.x = torch.bernoulli(
            torch.full((6, *SHAPE), 0.3), generator=g
        )  # binary pixels
        self.y = torch.tensor([0, 1, 2, 0, 1, 2])
        self.vae = vaekit.VAE.mlp(SHAPE, latent_dim=2, hidden=(8,))
        self.m2 = ssvae.M2.mlp(SHAPE, latent_dim=2, hidden=8, num_classes=3)
        self.hm = wake_sleep.HelmholtzMachine(SHAPE, latent_dim=3, hidden=(8,))
        self.dvae = vaekit.VAE(
            self.vae.encoder, DiscretizedLogisticDecoder.mlp(SHAPE, 2, (8,)), 2
        )
        self.x28 = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3), generator=g)
        self.vq = vqvae.VQVAE(num_codes=4, code_dim=2, hidden=4)
        self.pixelcnn = PixelCNN(num_codes=4, grid=(3, 3), channels=4, layers=1)
        self.codes = torch.randint(4, (5, 3, 3), generator=g)
        self.chain = torch.randn(20, 2, generator=g)


@pytest.fixture(scope="module")
def env():
    return ENV


# name -> (call(env, **overrides), {argument: roles}); roles: "data" (a tensor of examples checked
# for emptiness, dtype, being a tensor), "model" (dtype must match the model), "scored" (values
# scored under a Bernoulli or discretized likelihood: 0-255 and NaN refused), "labels", "size"
# (a positive int), "number" (a positive float)
DATA, MODEL, SCORED, MOVES = (
    "data",
    "model",
    "scored",
    "moves",
)  # moves: x is moved to the model's device
TABLE = {
    "ssvae.labelled_bound": (
        lambda e, **o: ssvae.labelled_bound(
            **{"model": e.m2, "x": e.x, "y": e.y, "k": 1, **o}
        ),
        {"x": {DATA, MODEL, SCORED}, "y": {"labels", "range"}, "k": {"size"}},
    ),
    "ssvae.class_bounds": (
        lambda e, **o: ssvae.class_bounds(**{"model": e.m2, "x": e.x, "k": 1, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "ssvae.unlabelled_bound": (
        lambda e, **o: ssvae.unlabelled_bound(**{"model": e.m2, "x": e.x, "k": 1, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "ssvae.sampled_unlabelled_bound": (
        lambda e, **o: ssvae.sampled_unlabelled_bound(**{"model": e.m2, "x": e.x, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "ssvae.log_marginal": (
        lambda e, **o: ssvae.log_marginal(**{"model": e.m2, "x": e.x, "k": 2, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "ssvae.analogies": (
        lambda e, **o: ssvae.analogies(**{"model": e.m2, "x": e.x, "y": e.y, **o}),
        {"x": {DATA, MODEL}, "y": {"labels", "range"}},
    ),
    "ssvae.predict": (
        lambda e, **o: ssvae.predict(**{"classifier": e.m2.classifier, "x": e.x, **o}),
        {"x": {MOVES, DATA, MODEL}, "batch_size": {"size"}},
    ),
    "ssvae.error_rate": (
        lambda e, **o: ssvae.error_rate(
            **{"classifier": e.m2.classifier, "x": e.x, "y": e.y, **o}
        ),
        {"x": {MOVES, DATA, MODEL}, "y": {"labels"}},
    ),
    "ssvae.balanced_labels": (
        lambda e, **o: ssvae.balanced_labels(**{"y": e.y, "per_class": 1, **o}),
        {"y": {"labels"}, "per_class": {"size"}},
    ),
    "ssvae.paired_error_difference": (
        lambda e, **o: ssvae.paired_error_difference(
            **{"pred_a": e.y, "pred_b": e.y, "y": e.y, **o}
        ),
        {"pred_a": {"labels"}, "pred_b": {"labels"}, "y": {"labels"}},
    ),
    "ssvae.fit_classifier": (
        lambda e, **o: ssvae.fit_classifier(
            **{
                "x": e.x,
                "y": e.y,
                "x_val": e.x,
                "y_val": e.y,
                "steps": 1,
                "batch_size": 3,
                "num_classes": 3,
                "weight_decays": (0.0,),
                **o,
            }
        ),
        {
            "x": {DATA},
            "y": {"labels", "range"},
            "x_val": {DATA},
            "y_val": {"labels", "range"},
            "steps": {"size"},
            "batch_size": {"size"},
            "lr": {"number"},
        },
    ),
    "ssvae.fit_m2": (
        lambda e, **o: ssvae.fit_m2(
            **{
                "model": e.m2,
                "x_labelled": e.x,
                "y_labelled": e.y,
                "x_unlabelled": e.x,
                "x_val": e.x,
                "y_val": e.y,
                "steps": 1,
                "batch_size": 3,
                "every": 1,
                "progress": False,
                **o,
            }
        ),
        {
            "x_labelled": {DATA},
            "y_labelled": {"labels", "range"},
            "x_unlabelled": {DATA},
            "x_val": {DATA},
            "y_val": {"labels", "range"},
            "steps": {"size"},
            "batch_size": {"size"},
            "every": {"size"},
            "lr": {"number"},
        },
    ),
    "ssvae.posterior_moments": (
        lambda e, **o: ssvae.posterior_moments(**{"vae": e.vae, "x": e.x, **o}),
        {"batch_size": {"size"}},
    ),
    "wake_sleep.wake_theta_loss": (
        lambda e, **o: wake_sleep.wake_theta_loss(**{"model": e.hm, "x": e.x, **o}),
        {"x": {DATA, MODEL, SCORED}},
    ),
    "wake_sleep.wake_sleep_loss": (
        lambda e, **o: wake_sleep.wake_sleep_loss(**{"model": e.hm, "x": e.x, **o}),
        {"x": {DATA, MODEL, SCORED}},
    ),
    "wake_sleep.rws_loss": (
        lambda e, **o: wake_sleep.rws_loss(**{"model": e.hm, "x": e.x, "k": 2, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "wake_sleep.sampled_log_weights": (
        lambda e, **o: wake_sleep.sampled_log_weights(
            **{"model": e.hm, "x": e.x, "k": 2, **o}
        ),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "wake_sleep.dream": (
        lambda e, **o: wake_sleep.dream(**{"model": e.hm, "n": 2, **o}),
        {"n": {"size"}},
    ),
    "wake_sleep.sleep_phi_loss": (
        lambda e, **o: wake_sleep.sleep_phi_loss(**{"model": e.hm, "n": 2, **o}),
        {"n": {"size"}},
    ),
    "wake_sleep.mcem_m_loss": (
        lambda e, **o: wake_sleep.mcem_m_loss(
            **{"model": e.vae, "x": e.x, "z": torch.zeros(6, 2), **o}
        ),
        {"x": {DATA, MODEL, SCORED}},
    ),
    "wake_sleep.fit_mcem": (
        lambda e, **o: wake_sleep.fit_mcem(
            **{
                "model": e.vae,
                "x": e.x,
                "steps": 1,
                "batch_size": 3,
                "m_steps": 1,
                "n_leapfrog": 1,
                "progress": False,
                **o,
            }
        ),
        {
            "x": {MOVES, DATA, MODEL, SCORED},
            "steps": {"size"},
            "batch_size": {"size"},
            "m_steps": {"size"},
            "n_leapfrog": {"size"},
            "transitions": {"size"},
            "lr": {"number"},
        },
    ),
    "hmc.log_marginal": (
        lambda e, **o: hmc.log_marginal(
            **{
                "model": e.vae,
                "x": e.x[:2],
                "n_samples": 2,
                "burn_in": 1,
                "n_leapfrog": 1,
                "chains": 1,
                "k_importance": 4,
                **o,
            }
        ),
        {
            "x": {DATA, MODEL, SCORED},
            "n_samples": {"size"},
            "chains": {"size"},
            "k_importance": {"size"},
            "n_leapfrog": {"size"},
            "step_size": {"number"},
        },
    ),
    "hmc.sir_init": (
        lambda e, **o: hmc.sir_init(**{"model": e.vae, "x": e.x, "k": 3, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}, "chains": {"size"}},
    ),
    "hmc.sample": (
        lambda e, **o: hmc.sample(
            **{
                "log_prob": lambda z: -(z**2).sum(-1),
                "z0": torch.zeros(2, 2),
                "n_samples": 2,
                "n_leapfrog": 1,
                **o,
            }
        ),
        {"n_samples": {"size"}, "n_leapfrog": {"size"}, "step_size": {"number"}},
    ),
    "hmc.effective_sample_size": (
        lambda e, **o: hmc.effective_sample_size(**{"chain": e.chain, **o}),
        {"chain": {DATA, "nan"}},
    ),
    "vqvae.objective": (
        lambda e, **o: vqvae.objective(**{"model": e.vq, "x": e.x28, **o}),
        {"x": {DATA, MODEL, SCORED}},
    ),
    "VQVAE.nll_bound": (
        lambda e, **o: e.vq.nll_bound(**{"x": e.x28, "prior": e.pixelcnn_on_7x7, **o}),
        {"x": {MOVES, DATA, MODEL, SCORED}, "batch_size": {"size"}},
    ),
    "VQVAE.codes": (
        lambda e, **o: e.vq.codes(**{"x": e.x28, **o}),
        {"x": {MOVES, DATA, MODEL}, "batch_size": {"size"}},
    ),
    "vqvae.nearest_neighbour_accuracy": (
        lambda e, **o: vqvae.nearest_neighbour_accuracy(
            **{"samples": e.x28, "real": e.x28, **o}
        ),
        {"samples": {"tensor"}, "real": {"tensor"}},
    ),
    "PixelCNN.log_prob": (
        lambda e, **o: e.pixelcnn.log_prob(**{"indices": e.codes, **o}),
        {"indices": {"codes"}},
    ),
    "PixelCNN.sample": (
        lambda e, **o: e.pixelcnn.sample(**{"n": 1, **o}),
        {"n": {"size"}, "temperature": {"number"}},
    ),
    "pixelcnn.nll": (
        lambda e, **o: nll(**{"model": e.pixelcnn, "indices": e.codes, **o}),
        {"indices": {"codes"}},
    ),
    "discretized.to_levels": (
        lambda e, **o: discretized.to_levels(**{"x": e.x, **o}),
        {"x": {"tensor", "nan", "255"}, "bins": {"size"}},
    ),
    "discretized.dequantize": (
        lambda e, **o: discretized.dequantize(**{"x": e.x, **o}),
        {"x": {"tensor", "nan", "255"}, "bins": {"size"}},
    ),
    "discretized.pixel_categorical": (
        lambda e, **o: discretized.pixel_categorical(**{"x": e.x, **o}),
        {"x": {"tensor", "nan", "255"}, "bins": {"size"}},
    ),
    "elbo with a discretized decoder": (
        lambda e, **o: objectives.elbo(**{"model": e.dvae, "x": e.x, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "objectives.elbo": (
        lambda e, **o: objectives.elbo(**{"model": e.vae, "x": e.x, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "objectives.iwae_bound": (
        lambda e, **o: objectives.iwae_bound(**{"model": e.vae, "x": e.x, "k": 2, **o}),
        {"x": {DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "objectives.expected_bounds": (
        lambda e, **o: objectives.expected_bounds(
            **{"model": e.vae, "x": e.x, "ks": [1, 2], **o}
        ),
        {"x": {DATA, MODEL, SCORED}, "reps": {"size"}},
    ),
    "metrics.log_likelihood": (
        lambda e, **o: metrics.log_likelihood(
            **{"model": e.vae, "x": e.x, "k": 2, "progress": False, **o}
        ),
        {"x": {MOVES, DATA, MODEL, SCORED}, "k": {"size"}},
    ),
    "metrics.evaluate_elbo": (
        lambda e, **o: metrics.evaluate_elbo(**{"model": e.vae, "x": e.x, **o}),
        {"x": {MOVES, DATA, MODEL, SCORED}, "batch_size": {"size"}},
    ),
    "information.information_terms": (
        lambda e, **o: information.information_terms(
            **{"q": e.vae.encoder(e.x), "prior": e.vae.prior, **o}
        ),
        {"samples": {"size"}},
    ),
    "pixelcnn.vertical_mask": (
        lambda e, **o: vertical_mask(**{"k": 3, "include_center_row": True, **o}),
        {"k": {"size"}},
    ),
    "pixelcnn.horizontal_mask": (
        lambda e, **o: horizontal_mask(**{"k": 3, "include_center": True, **o}),
        {"k": {"size"}},
    ),
    "information.latent_information": (
        lambda e, **o: information.latent_information(
            **{"model": e.vae, "x": e.x, **o}
        ),
        {
            "x": {DATA, MODEL, MOVES, SCORED},
            "samples": {"size"},
            "batch_size": {"size"},
        },
    ),
    "metrics.posterior_means": (
        lambda e, **o: metrics.posterior_means(**{"model": e.vae, "x": e.x, **o}),
        {"x": {DATA, MODEL, MOVES, SCORED}, "batch_size": {"size"}},
    ),
    "metrics.active_units": (
        lambda e, **o: metrics.active_units(**{"model": e.vae, "x": e.x, **o}),
        {
            "x": {DATA, MODEL, MOVES, SCORED},
            "batch_size": {"size"},
            "threshold": {"nonnegative"},
        },
    ),
    "metrics.kl_per_dim": (
        lambda e, **o: metrics.kl_per_dim(**{"model": e.vae, "x": e.x, **o}),
        {"x": {DATA, MODEL, MOVES, SCORED}, "batch_size": {"size"}},
    ),
    "metrics.nearest_centre_accuracy": (
        lambda e, **o: metrics.nearest_centre_accuracy(
            **{
                "z_train": e.chain[:6],
                "y_train": e.y,
                "z_test": e.chain[:6],
                "y_test": e.y,
                **o,
            }
        ),
        {"y_train": {"labels"}, "y_test": {"labels"}},
    ),
    "information.encode_all": (
        lambda e, **o: information.encode_all(**{"model": e.vae, "x": e.x, **o}),
        {"x": {DATA, MODEL, MOVES, SCORED}, "batch_size": {"size"}},
    ),
    "compare.paired": (
        lambda e, **o: compare.paired(**{"a": e.chain[:, 0], "b": e.chain[:, 1], **o}),
        {"a": {"finite"}, "b": {"finite"}},
    ),  # lists are fine here: torch.as_tensor
    "compare.score": (
        lambda e, **o: compare.score(**{"model": e.vae, "x": e.x, "k": 2, **o}),
        {"x": {DATA, MODEL, MOVES, SCORED}, "k": {"size"}},
    ),
    "autoregressive.made_masks": (
        lambda e, **o: made_masks(**{"n": 4, "hidden": 8, **o}),
        {"n": {"size"}, "hidden": {"size"}},
    ),
    "protocols.lr_schedule": (
        lambda e, **o: protocols.lr_schedule(
            **{"cfg": protocols.protocol("fast"), "steps": 10, **o}
        ),
        {"steps": {"size"}},
    ),
    "vq.codebook_usage": (
        lambda e, **o: vq.codebook_usage(**{"indices": e.codes, "num_codes": 4, **o}),
        {"num_codes": {"size"}},
    ),
    "dequantization.dequantized_elbo": (
        lambda e, **o: dequantization.dequantized_elbo(
            **{"model": e.dvae, "x": e.x, **o}
        ),
        {"x": {DATA, MODEL, SCORED}, "bins": {"size"}},
    ),
    "vaekit.fit": (
        lambda e, **o: vaekit.fit(
            **{
                "model": e.vae,
                "objective": objectives.elbo,
                "data": e.x,
                "steps": 1,
                "batch_size": 3,
                "progress": False,
                **o,
            }
        ),
        {"steps": {"size"}, "batch_size": {"size"}, "lr": {"number"}},
    ),
}


def bad_values(e: Env, name: str, roles: set, valid):
    """(label, bad value, expected exception types) for one argument."""
    both = (ValueError, TypeError)
    if {"data", "tensor", "nan", "255"} & roles:
        yield "not a tensor", valid.tolist(), both
    if DATA in roles:
        yield "empty", valid[:0], (ValueError,)
        yield "integer", valid.long(), (TypeError,)
    if MODEL in roles:
        yield "float64 for a float32 model", valid.double(), (TypeError,)
        if MOVES not in roles:
            yield "on another device (meta) than the model", valid.to("meta"), both
            if torch.cuda.is_available():  # the model is on the CPU
                yield "on cuda for a CPU model", valid.cuda(), both
    if SCORED in roles or "255" in roles:
        yield "0-255 pixels", valid * 255, (ValueError,)
    if SCORED in roles or {"nan", "finite"} & roles:
        nan = valid.clone()
        nan.view(-1)[0] = float("nan")
        yield "a NaN", nan, (ValueError,)
    if "labels" in roles:
        yield "float labels (3.7)", valid.double() + 0.7, (TypeError,)
        yield "a column [N, 1]", valid[:, None], (ValueError,)
        yield "not a tensor", valid.tolist(), both
    if "range" in roles:
        yield "out of range", valid + 100, (ValueError,)
    if "codes" in roles:
        yield "float codes", valid.double(), (TypeError,)
        yield "codes out of range", valid + 100, (ValueError,)
        yield "on the meta device", valid.to("meta"), both
    if "size" in roles:
        yield "0", 0, both
        yield "-1", -1, both
        yield "a string", "3", both
        yield "a fraction", 2.5, both
        yield "a bool", True, both
    if "nonnegative" in roles:
        yield "-1", -1.0, both
        yield "a string", "0.1", both
        yield "NaN", float("nan"), both
    if "number" in roles:
        yield "0", 0.0, both
        yield "a string", "0.1", both
        yield "NaN", float("nan"), both


def cases():
    e = Env()
    e.pixelcnn_on_7x7 = PixelCNN(num_codes=4, grid=(7, 7), channels=4, layers=1)
    out = []
    for fn_name, (call, args) in TABLE.items():
        for arg, roles in args.items():
            valid = _valid_value(e, fn_name, call, arg)
            for label, value, errors in bad_values(e, arg, roles, valid):
                out.append(
                    pytest.param(
                        fn_name, arg, value, errors, id=f"{fn_name}-{arg}-{label}"
                    )
                )
    return e, out


def _valid_value(e: Env, fn_name: str, call, arg: str):
    """The value the table's call passes for ``arg`` (read from the lambda's defaults by calling it
    with a recorder would run it; the table's conventions name them instead)."""
    table = {
        "x": e.x28 if fn_name.startswith(("vqvae", "VQVAE")) else e.x,
        "y": e.y,
        "y_labelled": e.y,
        "y_val": e.y,
        "pred_a": e.y,
        "pred_b": e.y,
        "x_labelled": e.x,
        "x_unlabelled": e.x,
        "x_val": e.x,
        "chain": e.chain,
        "samples": e.x28,
        "real": e.x28,
        "indices": e.codes,
        "y_train": e.y,
        "y_test": e.y,
        "a": e.chain[:, 0],
        "b": e.chain[:, 1],
    }
    if fn_name == "hmc.log_marginal" and arg == "x":
        return e.x[:2]
    return table.get(arg)


ENV, CASES = cases()


@pytest.mark.parametrize("fn_name, arg, value, errors", CASES)
def test_bad_input_is_refused_naming_the_argument(fn_name, arg, value, errors):
    call, _ = TABLE[fn_name]
    with pytest.raises(errors) as caught:
        call(ENV, **{arg: value})
    assert arg in str(caught.value), (
        f"{fn_name}({arg}=...): the message does not name {arg!r}: {caught.value}"
    )


@pytest.mark.parametrize("fn_name", TABLE)
def test_the_valid_call_of_each_row_runs(fn_name):
    TABLE[fn_name][0](ENV)


# --------------------------------------------------------------------------- the walk

WALKED = (
    "models.ssvae",
    "inference.wake_sleep",
    "inference.hmc",
    "models.vqvae",
    "models.pixelcnn",
    "discretized",
    "models.vq",
    "inference.objectives",
    "evaluation.metrics",
    "evaluation.information",
    "evaluation.compare",
    "models.priors",
    "models.autoregressive",
    "evaluation.protocols",
    "train",
    "models.dequantization",
)
ROLES = {
    "x",
    "y",
    "k",
    "n",
    "batch_size",
    "steps",
    "x_val",
    "y_val",
    "x_labelled",
    "y_labelled",
    "x_unlabelled",
    "n_samples",
    "per_class",
    "indices",
    "chain",
    "samples",
    "real",
    "pred_a",
    "pred_b",
    "num_codes",
}
EXEMPT = {  # function -> why it is not in the table
    "ssvae.cross_entropy_objective": "a fit objective; its classifier checks x (Classifier.forward)",
    "vq.perplexity_of_counts": "counts, not data: covered by tests/test_robustness.py",
    "vq.codebook_perplexity": "shares codebook_usage's checks",
    "vq.dead_code_fraction": "shares codebook_usage's checks",
    "objectives.elbo_terms": "elbo's body (tests/test_robustness.py)",
    "objectives.vae_k_bound": "iwae_bound's checks (tests/test_robustness.py)",
    "objectives.log_weights": "iwae_bound's checks (tests/test_robustness.py)",
    "objectives.check_input": "the check itself",
    "objectives.check_model_data": "the check itself",
    "compare.score_each": "compare.score's checks, once per model",
    "objectives.weighted_draws": "log_weights' checks",
    "objectives.elbo_draws": "elbo's checks",
    "metrics.autocast_gap": "log_likelihood's checks",
    "metrics.elbo_evaluator": "evaluate_elbo's checks, when it runs",
    "metrics.dequantization_gap": "dequantized_bound's checks",
    "discretized.dequantized_bound": "to_levels' checks (through dequantize)",
    "hmc.log_joint": "returns a closure over x; log_marginal, sir_init and MCEM check x before using it",
    "train.fingerprint": "fit's bookkeeping, called after fit's checks",
    "train.make_optimizer": "fit's checks",
    "discretized.density_log_prob": "the density behind dequantized_elbo and dequantized_bound, called after their checks",
}


def test_every_public_function_with_data_or_size_arguments_is_in_the_table():
    covered = {name.split(".", 1)[-1] if name.count(".") else name for name in TABLE}
    missing = []
    for module in WALKED:
        mod = importlib.import_module(f"vaekit.{module}")
        short = module.rsplit(".", 1)[-1]
        for name, fn in vars(mod).items():
            if (
                name.startswith("_")
                or not inspect.isfunction(fn)
                or fn.__module__ != mod.__name__
            ):
                continue
            if not ROLES & set(inspect.signature(fn).parameters):
                continue
            key = f"{short}.{name}"
            if (
                key not in TABLE
                and key not in EXEMPT
                and name not in covered
                and f"vaekit.{name}" not in TABLE
            ):
                missing.append(key)
    assert not missing, (
        f"public functions with no row in TABLE (nor a reason in EXEMPT): {missing}"
    )


# --------------------------------------------------------------------------- numbers that were wrong


def test_a_chain_that_never_moved_has_one_effective_sample_in_any_dtype():
    for dtype in (torch.float32, torch.float64):
        for value in (0.0, 0.3, -1234.5):
            ess = hmc.effective_sample_size(torch.full((100, 2), value, dtype=dtype))
            assert torch.equal(ess, torch.ones(2, dtype=dtype)), (dtype, value, ess)
    moving = hmc.effective_sample_size(
        torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    )
    assert (moving > 200).all() and torch.isfinite(moving).all()


def test_a_nan_grey_level_is_refused_not_scored_as_black():
    with pytest.raises(
        ValueError, match=r"x must lie in \[0, 1\] \(and not be NaN\).*1 NaN"
    ):
        discretized.to_levels(torch.tensor([0.5, float("nan")]))


def test_error_rate_of_a_perfect_classifier_with_column_labels_is_refused_not_0_84(env):
    y = ssvae.predict(env.m2.classifier, env.x)
    assert ssvae.error_rate(env.m2.classifier, env.x, y) == 0.0
    with pytest.raises(
        ValueError, match=r"y must have shape \[B\].*flatten it with .view\(-1\)"
    ):
        ssvae.error_rate(env.m2.classifier, env.x, y[:, None])


def test_float_labels_are_refused_not_truncated(env):
    with pytest.raises(
        TypeError,
        match="y must be an integer tensor of labels.*convert whole-number labels with .long()",
    ):
        ssvae.fit_classifier(
            env.x,
            env.y.double() + 0.7,
            env.x,
            env.y,
            steps=1,
            batch_size=3,
            num_classes=3,
        )


def test_vamp_prior_pseudo_inputs_follow_the_encoder_to_its_device_and_dtype():
    model = vaekit.VAE.mlp(SHAPE, latent_dim=2, hidden=(8,)).to(
        device="meta", dtype=torch.float64
    )
    prior = priors.VampPrior(model.encoder, n_pseudo=3)
    assert (
        prior.pseudo_logits.device.type == "meta"
        and prior.pseudo_logits.dtype == torch.float64
    )


def test_float64_in_float64_out(env):
    model = vaekit.VAE.mlp(SHAPE, latent_dim=2, hidden=(8,)).double()
    _, se = objectives.expected_bounds(model, env.x.double(), [1, 2], reps=1)
    assert se.dtype == torch.float64 and torch.isnan(se).all()
    m2 = ssvae.M2.mlp(SHAPE, latent_dim=2, hidden=8, num_classes=3).double()
    assert ssvae.analogies(m2, env.x.double(), env.y).dtype == torch.float64


def test_the_discretized_decoder_refuses_0_255_pixels(env):
    grey = torch.randint(256, (4, *SHAPE)) / 255.0
    assert torch.isfinite(objectives.elbo(env.dvae, grey)).all()
    with pytest.raises(
        ValueError, match=r"x must lie in \[0, 1\] for a discretized likelihood"
    ):
        objectives.elbo(env.dvae, grey * 255)


def test_value_checks_are_skipped_when_switched_off(env):
    """The training loop's speed: inside input_checks(False) nothing reads the data's values."""
    with input_checks(False):
        ssvae.labelled_bound(
            env.m2, env.x * 255, env.y
        )  # nonsense, but not checked: no host sync
        wake_sleep.rws_loss(env.hm, env.x * 255)


def test_encoding_only_functions_refuse_0_255_pixels_of_a_bernoulli_model(env):
    """Found beyond the issue's list: active units, KL per dimension and the information terms of
    0-255 pixels came back as numbers (2,238 nats of rate) for a model of pixels in [0, 1]."""
    for fn in (
        metrics.active_units,
        metrics.kl_per_dim,
        information.latent_information,
    ):
        with pytest.raises(
            ValueError, match=r"x must lie in \[0, 1\] for a Bernoulli likelihood"
        ):
            fn(env.vae, env.x * 255)


def test_the_helpers_name_their_argument():
    with pytest.raises(TypeError, match="lr must be a positive number, got str"):
        check_positive_number(lr="0.1")
    with pytest.raises(
        ValueError, match="step_size must be a positive, finite number, got nan"
    ):
        check_positive_number(step_size=float("nan"))
    with pytest.raises(
        ValueError, match=r"labels must lie in \[0, 9\], got values in \[0, 12\]"
    ):
        check_labels("labels", torch.tensor([0, 12]), num_classes=10)
