"""The bundled MNI152 sample loads with the network blocked, into a fresh cache, and reloads fast from disk."""
import json, os, socket, subprocess, sys, time
import pytest
import torch


def _no_network(*args, **kwargs):
    raise OSError("network access attempted while loading the bundled MNI152 sample")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    "An empty cache dir (MEDSEG_LAB_CACHE), empty in-process caches and no sockets."
    from medseg_lab.data import mni152
    monkeypatch.setenv("MEDSEG_LAB_CACHE", str(tmp_path / "cache"))
    for f in (mni152._mni152_base_cached, mni152._tissue_cached, mni152._lesions_cached): f.cache_clear()
    monkeypatch.setattr(socket, "socket", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    yield tmp_path / "cache"
    for f in (mni152._mni152_base_cached, mni152._tissue_cached, mni152._lesions_cached): f.cache_clear()


def test_sockets_are_blocked(fresh_cache):
    with pytest.raises(OSError, match="network"):
        socket.socket()


def test_loads_offline_into_fresh_cache(fresh_cache):
    from medseg_lab.data.mni152 import mni152_tissue, mni152_lesions, cache_dir
    assert cache_dir() == fresh_cache and not fresh_cache.exists()
    tis = mni152_tissue(2, "val")
    assert tuple(tis.images.shape) == (16, 1, 160, 192) and tis.num_classes == 3
    les = mni152_lesions(3, "test", seed=0)
    assert tuple(les.images.shape) == (2, 1, 160, 192, 32) and les.num_classes == 3
    assert (les.labels == 1).any() and (les.labels == 2).any()
    names = sorted(p.name for p in fresh_cache.iterdir())
    assert any(n.startswith("mni152_base") for n in names)
    assert any(n.startswith("mni152_tissue") for n in names) and any(n.startswith("mni152_lesions") for n in names)
    assert not any(n.endswith(".tmp") for n in names)   # atomic writes leave no temp files


def test_second_load_from_disk_is_fast(tmp_path):
    "A fresh process finds the on-disk cache: the load call itself takes well under a second."
    env = dict(os.environ, MEDSEG_LAB_CACHE=str(tmp_path / "cache"))
    code = ("import time, json; from medseg_lab.data.mni152 import mni152_tissue, mni152_lesions\n"
            "t=time.perf_counter(); mni152_tissue(2,'train'); mni152_lesions(2,'train',seed=3); "
            "print(json.dumps(time.perf_counter()-t))")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    t1, t2 = json.loads(first.stdout.strip().splitlines()[-1]), json.loads(second.stdout.strip().splitlines()[-1])
    print(f"first load {t1:.2f} s, second load (disk cache, fresh process) {t2:.3f} s")
    assert t2 < 1.0, t2


def test_same_seed_identical_different_seed_differs(fresh_cache):
    from medseg_lab.data.mni152 import mni152_lesions
    a, b, c = (mni152_lesions(2, "val", seed=s) for s in (5, 5, 6))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
