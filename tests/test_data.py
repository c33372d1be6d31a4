"""MNIST loading: IDX parsing, the downloader against a local HTTP server, checksums, fallback."""

import functools
import http.server
import os
import socket
import stat
import struct
import threading
import time

import numpy as np
import pytest
import torch

import vaekit
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
    table = {
        s: tuple((name, data.md5sum(idx_dir / name)) for name, _ in files)
        for s, files in data.RESOURCES.items()
    }
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
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www")
    )
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
    np.testing.assert_array_equal(
        (test.images[:, 0] * 255).round().byte().numpy(), expected
    )
    # one split needs only its own two files
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        name for name, _ in served_checksums["test"]
    )


def test_corrupt_download_fails_checksum_and_leaves_nothing(
    server, served_checksums, tmp_path
):
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        data.mnist("train", root=cache, mirrors=[server + "/bad/"], fallback=False)
    assert not cache.exists() or not any(cache.iterdir()), (
        "a failed download must leave no file behind"
    )


def test_bad_mirror_then_good_mirror(server, served_checksums, tmp_path):
    cache = tmp_path / "cache"
    train = data.mnist(
        "train",
        root=cache,
        mirrors=[server + "/bad/", server + "/missing/", server + "/good/"],
    )
    assert len(train) == 300
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        name for name, _ in served_checksums["train"]
    )


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
        train = data.mnist(
            "train", root=tmp_path / "empty", mirrors=["http://127.0.0.1:9/"], timeout=2
        )
    assert (
        len(train) == 4000
        and not train.is_full_mnist
        and train.source == data.EMBEDDED_SOURCE
    )
    test = data.embedded_digits("test")
    assert torch.bincount(test.labels).tolist() == [100] * 10
    # the held-out digits are disjoint from the training digits
    tr = {
        tuple(r)
        for r in (train.images.view(4000, -1) * 255)
        .round()
        .byte()
        .numpy()
        .tolist()[:4000]
    }
    assert not any(
        tuple(r) in tr
        for r in (test.images.view(1000, -1) * 255).round().byte().numpy().tolist()
    )


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


# --------------------------------------------------------------------------- a hostile network


def _raw_idx(path, array):
    """An uncompressed IDX file (names without .gz carry no checksum, so only the cross-checks guard them)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.write_bytes(
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


@pytest.fixture
def hostile(idx_dir):
    """A loopback HTTP server (127.0.0.1 only) whose first path segment picks a behaviour:
    good (serves the file), cut (Content-Length promised, half sent, connection closed), garbage
    (a status line that is not HTTP), chunked (a chunked reply cut mid-chunk), reset (part of the reply, then a TCP reset), hang (accepts, never answers),
    trickle (one byte every 50 ms), flaky (cut on its first request, then good).
    Every reply is bounded in time and the server shuts itself down after 60 s."""
    served: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            _, mode, name = self.path.split("/", 2)
            path = idx_dir / name
            if not path.exists():
                self.send_error(404)
                return
            payload = path.read_bytes()
            served[mode] = served.get(mode, 0) + 1
            if mode == "flaky":
                mode = "cut" if served[mode] == 1 else "good"
            if mode == "garbage":
                self.wfile.write(b"SURPRISE, NOT HTTP\r\n\r\n")
                self.close_connection = True
                return
            if mode == "hang":
                time.sleep(3)
                self.close_connection = True
                return
            if (
                mode == "chunked"
            ):  # chunked transfer encoding (no Content-Length), cut mid-chunk
                self.protocol_version = "HTTP/1.1"
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(
                    b"%x\r\n" % 256
                    + payload[:256]
                    + b"\r\n"
                    + b"%x\r\n" % 256
                    + payload[256:300]
                )
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if mode == "good":
                self.wfile.write(payload)
            elif mode == "reset":  # part of the body, then a TCP reset
                self.wfile.write(payload[:100])
                self.wfile.flush()
                time.sleep(0.1)
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()  # now, before the server's orderly shutdown could send a FIN
                self.close_connection = True
            elif mode == "cut":
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif mode == "trickle":
                t0 = time.monotonic()
                for b in payload:
                    if time.monotonic() - t0 > 5:
                        break
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.05)
                self.close_connection = True

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: (
        None
    )  # the reset connection's own cleanup fails, as it should
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    watchdog = threading.Timer(60, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    watchdog.cancel()
    httpd.shutdown()
    httpd.server_close()


BAD_MIRRORS = {
    "cut": "bytes still to come",
    "chunked": "chunked reply cut short",
    "garbage": "BadStatusLine",
    "reset": "Connection reset",
    "hang": "timed out",
}


@pytest.mark.parametrize("mode", BAD_MIRRORS)
def test_each_network_failure_is_named_and_falls_back(
    hostile, served_checksums, tmp_path, mode
):
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match=BAD_MIRRORS[mode]):
        data.mnist(
            "test",
            root=cache,
            mirrors=[f"{hostile}/{mode}/"],
            timeout=0.5,
            fallback=False,
        )
    assert not cache.exists() or not any(cache.iterdir()), (
        "no partial file is left behind"
    )
    with pytest.warns(data.EmbeddedDigitsWarning) as caught:
        test = data.mnist(
            "test", root=cache, mirrors=[f"{hostile}/{mode}/"], timeout=0.5
        )
    assert (
        len(test) == 1000
        and not test.is_full_mnist
        and BAD_MIRRORS[mode] in test.reason
    )
    (w,) = caught.list
    assert (
        str(w.message)
        == "MNIST test download failed; using the 5,000 embedded real digits (4,000 train / 1,000 test)"
    )
    assert BAD_MIRRORS[mode] in w.message.reason


def test_every_network_failure_falls_through_to_the_next_mirror(
    hostile, served_checksums, tmp_path
):
    cache = tmp_path / "cache"
    mirrors = [f"{hostile}/{m}/" for m in ("cut", "garbage", "reset", "hang", "good")]
    test = data.mnist("test", root=cache, mirrors=mirrors, timeout=0.5, fallback=False)
    assert len(test) == 100 and test.is_full_mnist
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        name for name, _ in served_checksums["test"]
    )


def test_the_whole_download_has_a_deadline(hostile, served_checksums, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="longer than its deadline"):
        data.mnist(
            "test",
            root=tmp_path,
            mirrors=[f"{hostile}/trickle/"],
            timeout=1.0,
            deadline=0.5,
            fallback=False,
        )
    assert time.monotonic() - t0 < 2.5, (
        "each read is quick, but the transfer as a whole must stop"
    )
    assert not any(tmp_path.iterdir())


def test_a_failure_does_not_mark_a_mirror_dead_for_later_calls(
    hostile, served_checksums, tmp_path, idx_dir
):
    with pytest.raises(RuntimeError, match="bytes still to come"):
        data.mnist("test", root=tmp_path, mirrors=[f"{hostile}/flaky/"], fallback=False)
    assert (
        len(
            data.mnist(
                "test", root=tmp_path, mirrors=[f"{hostile}/flaky/"], fallback=False
            )
        )
        == 100
    )
    # a mirror that refused connections is asked again by the next call, once it is up
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    later = f"http://127.0.0.1:{port}/"
    with pytest.raises(RuntimeError, match="refused"):
        data.mnist(
            "train", root=tmp_path / "a", mirrors=[later], timeout=0.5, fallback=False
        )
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(idx_dir)
    )
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert (
            len(
                data.mnist(
                    "train",
                    root=tmp_path / "a",
                    mirrors=[later],
                    timeout=2,
                    fallback=False,
                )
            )
            == 300
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_mirrors_come_from_the_environment(
    hostile, served_checksums, tmp_path, monkeypatch
):
    monkeypatch.setenv(data.ENV_MIRRORS, f" {hostile}/missing/ ,{hostile}/good/,")
    assert data.mirror_list() == (f"{hostile}/missing/", f"{hostile}/good/")
    assert len(data.mnist("test", root=tmp_path, fallback=False)) == 100
    monkeypatch.setenv(data.ENV_MIRRORS, "")
    assert data.mirror_list() == data.MIRRORS
    assert data.mirror_list(["http://a/"]) == ("http://a/",)
    with pytest.raises(ValueError, match="mirrors must be a non-empty list"):
        data.mirror_list([])


def test_offline_notice_is_one_short_line_and_keeps_the_reason(tmp_path):
    with pytest.warns(data.EmbeddedDigitsWarning) as caught:
        train = data.mnist(
            "train",
            root=tmp_path / "empty",
            mirrors=["http://127.0.0.1:9/", "http://127.0.0.1:9/x/"],
            timeout=2,
        )
    (w,) = caught.list
    assert (
        str(w.message)
        == "MNIST unavailable offline; using the 5,000 embedded real digits (4,000 train / 1,000 test)"
    )
    assert "127.0.0.1:9/x/" in w.message.reason and "refused" in w.message.reason
    assert train.reason == w.message.reason


def test_downloaded_and_atomically_written_files_get_the_users_permissions(
    hostile, served_checksums, tmp_path
):
    old = os.umask(0o027)
    try:
        data.mnist("test", root=tmp_path, mirrors=[f"{hostile}/good/"], fallback=False)
        with vaekit.utils.atomic_write(tmp_path / "results.json", "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert set(modes.values()) == {0o640}, modes
    os.umask(0o022)
    try:
        with vaekit.utils.atomic_write(tmp_path / "shared.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o644


# --------------------------------------------------------------------------- files that do not fit together


def _split_files(root, images, labels, split="train"):
    (img, _), (lab, _) = data.RESOURCES[split]
    _raw_idx(root / img[:-3], images)
    _raw_idx(root / lab[:-3], labels)
    return root / img[:-3], root / lab[:-3]


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "fewer labels",
            r"train-images-idx3-ubyte holds 100 images but .*train-labels-idx1-ubyte holds 50 labels",
        ),
        ("27x27", r"train-images-idx3-ubyte: images must be 28x28, got 27x27"),
        ("label 10", r"train-labels-idx1-ubyte: labels must be digits 0-9, found 10"),
        (
            "swapped",
            r"train-images-idx3-ubyte: magic number declares 1 dimensions, expected 3",
        ),
        (
            "flat images",
            r"train-images-idx3-ubyte: magic number declares 2 dimensions, expected 3",
        ),
    ],
)
def test_idx_files_are_cross_checked_and_the_file_named(tmp_path, case, message):
    images, labels = data._embedded_arrays()
    img, lab = images[:100].reshape(100, 28, 28), labels[:100]
    if case == "fewer labels":
        lab = lab[:50]
    elif case == "27x27":
        img = img[:, :27, :27]
    elif case == "label 10":
        lab = lab.copy()
        lab[7] = 10
    elif case == "swapped":
        img = lab
    elif case == "flat images":
        img = img.reshape(100, 784)
    _split_files(tmp_path, img, lab)
    with pytest.raises(RuntimeError, match=message):
        data.mnist("train", root=tmp_path, download=False, fallback=False)
    with pytest.warns(
        data.EmbeddedDigitsWarning,
        match=f"MNIST train files in {tmp_path} are damaged; using",
    ):
        assert len(data.mnist("train", root=tmp_path, download=False)) == 4000


def test_truncated_or_non_gzip_files_are_named(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"definitely not gzip")
    with pytest.raises(ValueError, match="x.gz: cannot be read"):
        data.read_idx(path)
    (tmp_path / "h").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="truncated IDX header"):
        data.read_idx(tmp_path / "h")


def test_a_damaged_embedded_file_is_refused_and_named(tmp_path, monkeypatch):
    from vaekit import _embedded

    folder = tmp_path / "pkg" / "_data"
    folder.mkdir(parents=True)
    raw = (_embedded.files("vaekit") / "_data" / _embedded.FILE).read_bytes()
    (folder / _embedded.FILE).write_bytes(raw[: len(raw) // 2])  # truncated
    monkeypatch.setattr(_embedded, "files", lambda package: tmp_path / "pkg")
    with pytest.raises(
        RuntimeError, match=r"embedded digits .*mnist_5k.npz are damaged"
    ):
        data.embedded_digits("train")
    with pytest.raises(
        RuntimeError,
        match="MNIST train split is not available .* and neither are the embedded digits",
    ):
        data.mnist("train", root=tmp_path / "empty", download=False)


def test_full_size_idx_folder_loads_through_the_real_path(tmp_path):
    """60,000 + 10,000 digits (the embedded ones tiled) in uncompressed IDX files, loaded by mnist(root=...)."""
    images, labels = data._embedded_arrays()
    tile = np.arange(60000) % len(labels)
    _split_files(tmp_path, images[tile].reshape(-1, 28, 28), labels[tile], "train")
    _split_files(
        tmp_path, images[tile[:10000]].reshape(-1, 28, 28), labels[tile[:10000]], "test"
    )
    train = data.mnist("train", root=tmp_path, download=False, fallback=False)
    test = data.mnist("test", root=tmp_path, download=False, fallback=False)
    assert (
        train.images.shape == (60000, 1, 28, 28)
        and len(test) == 10000
        and train.is_full_mnist
    )
    assert torch.equal(train.labels, torch.from_numpy(labels[tile].astype(np.int64)))
    np.testing.assert_array_equal(
        (train.images[59999, 0] * 255).round().byte().numpy(),
        images[59999 % len(labels)].reshape(28, 28),
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(timeout=0), "timeout must be a positive number of seconds, got 0"),
        (dict(timeout=-1), "timeout must be a positive number of seconds, got -1"),
        (dict(timeout="10"), "timeout must be a positive number of seconds, got '10'"),
        (dict(timeout=None), "timeout must be a positive number of seconds, got None"),
        (
            dict(deadline=-5),
            "deadline must be a positive number of seconds or None, got -5",
        ),
        (
            dict(deadline=float("nan")),
            "deadline must be a positive number of seconds or None, got nan",
        ),
    ],
)
def test_bad_timeout_or_deadline_is_named_not_turned_into_the_fallback(
    kwargs, message, tmp_path
):
    # a timeout of 0 or -1 would make every mirror fail and, with fallback=True, hand back the
    # embedded digits as if the network were down
    with pytest.raises(ValueError, match=message):
        data.mnist("test", root=tmp_path, mirrors=["http://127.0.0.1:9/"], **kwargs)


def test_distinct_indices_skips_exact_copies_in_order():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    assert data.distinct_indices(x).tolist() == [0, 1, 3]
    assert data.distinct_indices(x, 2).tolist() == [0, 1]
    images = torch.rand(6, 1, 4, 4)
    tiled = images[torch.tensor([3, 0, 3, 5, 0, 1, 2, 4, 5])]
    kept = data.distinct_indices(tiled)
    assert kept.tolist() == [0, 1, 3, 5, 6, 7]  # each image at its first appearance
    assert len(torch.unique(tiled[kept].flatten(1), dim=0)) == len(kept) == 6


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_distinct_indices_rejects_a_bad_count(n):
    with pytest.raises(ValueError, match="n must be"):
        data.distinct_indices(torch.rand(3, 2), n)
