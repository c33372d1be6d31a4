"""The package's layout: imports run one way, from the runner down to the core, and never in a circle.

Layers, from the bottom: the core (top-level modules: data, device, distributions, discretized, nets,
train, schedules, utils), models, inference, evaluation, figures, runner. A module may import from its
own layer and the layers below it. Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vaekit

PACKAGE = Path(vaekit.__file__).resolve().parent
LAYERS = ["core", "models", "inference", "evaluation", "figures", "runner"]
FACADES = {
    "vaekit",
    "vaekit.__main__",
}  # the package's public names and `python -m vaekit` may import anything


def module_name(path: Path) -> str:
    parts = ("vaekit",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    """The layer of a module or package ``vaekit.x[.y]``."""
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return 0


def imports(path: Path) -> set[str]:
    """The vaekit modules (or packages) a file imports, resolved to absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "vaekit"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "vaekit":
                base = node.module
            else:
                continue
            for a in (
                node.names
            ):  # `from . import metrics` imports a module; `from .x import f`, module x
                candidate = f"{base}.{a.name}"
                found.add(
                    candidate
                    if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists()
                    or (PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                    else base
                )
    return found - {name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def violations(g: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{src} ({LAYERS[layer(src)]}) imports {dst} ({LAYERS[layer(dst)]})"
        for src, targets in g.items()
        if src not in FACADES
        for dst in targets
        if layer(dst) > layer(src)
    )


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules (package __init__ files, which only gather their modules, left out)."""
    modules = {
        m
        for m in g
        if m not in FACADES and not (PACKAGE.parent / m.replace(".", "/")).is_dir()
    }
    edges = {m: {d for d in g[m] if d in modules} for m in modules}
    found, state = [], {}

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                found.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [])
    return found


def test_every_module_sits_in_a_known_layer():
    g = graph()
    assert len(g) > 30
    folders = {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    } - {"notebooks"}
    assert folders == set(LAYERS[1:]), (
        f"subpackages {sorted(folders)} differ from the layers {LAYERS[1:]}"
    )


def test_imports_run_from_the_runner_down_to_the_core():
    assert not violations(graph()), "imports against the layering:\n" + "\n".join(
        violations(graph())
    )


def test_no_import_cycles():
    assert not cycles(graph()), f"import cycles: {cycles(graph())}"


def test_the_checks_catch_a_wrong_import():
    g = graph()
    g["vaekit.models.vae"] = g["vaekit.models.vae"] | {"vaekit.evaluation.metrics"}
    assert violations(g) == [
        "vaekit.models.vae (models) imports vaekit.evaluation.metrics (evaluation)"
    ]
    g["vaekit.evaluation.metrics"] = g["vaekit.evaluation.metrics"] | {
        "vaekit.models.vae"
    }
    assert cycles(g)
    g = graph()
    g["vaekit.train"] = g["vaekit.train"] | {
        "vaekit.runner"
    }  # a package counts as its layer
    assert violations(g) == ["vaekit.train (core) imports vaekit.runner (runner)"]


def test_public_names_are_kept():
    for name in [
        "VAE",
        "elbo",
        "iwae_bound",
        "fit",
        "record",
        "recorded",
        "seed_everything",
        "smoke_requested",
        "default_device",
        "module_device",
        "autoregressive",
        "compare",
        "data",
        "distributions",
        "hmc",
        "information",
        "metrics",
        "nets",
        "objectives",
        "priors",
        "ssvae",
        "train",
        "viz",
        "wake_sleep",
    ]:
        assert hasattr(vaekit, name), name
    assert vaekit.viz is vaekit.figures.plots
    assert vaekit.metrics.codebook_usage is vaekit.models.vq.codebook_usage
    assert vaekit.inference.exact_elbo is vaekit.inference.variational.exact_elbo
    assert vaekit.train.bf16_autocast_available is vaekit.device.bf16_autocast_available
