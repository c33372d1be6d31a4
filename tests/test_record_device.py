"""Recording headline numbers, and the default device."""

import json

import pytest
import torch

import vaekit
from vaekit.runner import recorder as rec


def test_record_writes_json_atomically(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    monkeypatch.setenv(rec.ENV_VAR, str(target))
    assert vaekit.record("nll", torch.tensor(91.5)) == 91.5
    vaekit.record("units", 12)
    assert json.loads(target.read_text()) == {"nll": 91.5, "units": 12}
    assert vaekit.recorded()["units"] == 12
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    "value, error", [(float("nan"), ValueError), ("12", TypeError), ([1, 2], TypeError)]
)
def test_record_rejects_non_numbers(value, error):
    with pytest.raises(error, match="record"):
        vaekit.record("x", value)


def test_default_device_override(monkeypatch):
    monkeypatch.setenv("VAEKIT_DEVICE", "cpu")
    assert vaekit.default_device() == torch.device("cpu")
    monkeypatch.setenv("VAEKIT_DEVICE", "not-a-device")
    with pytest.raises(ValueError, match="VAEKIT_DEVICE"):
        vaekit.default_device()
    monkeypatch.delenv("VAEKIT_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else None
    assert vaekit.default_device().type in ({expected} if expected else {"cpu", "mps"})


def test_smoke_requested(monkeypatch):
    monkeypatch.delenv("VAEKIT_SMOKE", raising=False)
    assert not vaekit.smoke_requested(False) and vaekit.smoke_requested(True)
    monkeypatch.setenv("VAEKIT_SMOKE", "1")
    assert vaekit.smoke_requested(False)
