"""The bundled MNI152 sample loads with the network blocked, into a fresh cache, is read back from disk by a fresh
process, never served from a cache written by other code, and still loads when the cache cannot be written."""
import json, os, socket, subprocess, sys, warnings
import pytest
import torch


def _no_network(*args, **kwargs):
    raise OSError("network access attempted while loading the bundled MNI152 sample")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    "An empty cache dir (MEDSEG_LAB_CACHE), empty in-process caches and no sockets."
    from medseg_lab.data import mni152
    monkeypatch.setenv("MEDSEG_LAB_CACHE", str(tmp_path / "cache"))
    for f in (mni152._mni152_base_cached, mni152._tissue_cached, mni152._lesions_cached, mni152._code_key):
        f.cache_clear()
    monkeypatch.setattr(socket, "socket", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    yield tmp_path / "cache"
    for f in (mni152._mni152_base_cached, mni152._tissue_cached, mni152._lesions_cached, mni152._code_key):
        f.cache_clear()


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


def test_a_fresh_process_reads_the_cache_file_instead_of_building(tmp_path):
    "The second process finds the files the first one wrote: it reads them and builds nothing."
    env = dict(os.environ, MEDSEG_LAB_CACHE=str(tmp_path / "cache"))
    code = ("import json; from medseg_lab.data import mni152\n"
            "mni152.mni152_tissue(2, 'train'); mni152.mni152_lesions(2, 'train', seed=3)\n"
            "print(json.dumps(dict(mni152._CACHE_EVENTS)))")
    first, second = (json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                               check=True).stdout.strip().splitlines()[-1]) for _ in range(2))
    assert first.get("built") == 3 and first.get("read", 0) == 0, first      # base, tissue and lesions built
    assert second.get("read") == 2 and second.get("built", 0) == 0, second    # the two splits read; the base not needed
    assert not first.get("unwritable") and not second.get("unwritable")


def test_changed_generating_code_is_not_served_from_an_old_cache(fresh_cache, monkeypatch):
    from medseg_lab.data import mni152
    mni152.mni152_lesions(2, "val", seed=0)
    files = sorted(p.name for p in fresh_cache.iterdir())
    real = mni152._lesion_block
    def changed(*args, **kwargs):                                             # a new lesion generator
        img, lab = real(*args, **kwargs); return img, lab
    monkeypatch.setattr(mni152, "_lesion_block", changed)
    for f in (mni152._lesions_cached, mni152._code_key): f.cache_clear()
    built = mni152._CACHE_EVENTS["built"]
    mni152.mni152_lesions(2, "val", seed=0)
    assert mni152._CACHE_EVENTS["built"] == built + 1                          # built again, not read
    new = sorted(p.name for p in fresh_cache.iterdir())
    assert len(new) == len(files) + 1 and set(files) < set(new)               # a new file beside the old one


def test_an_unwritable_cache_folder_falls_back_to_memory(tmp_path, monkeypatch):
    from medseg_lab.data import mni152
    (tmp_path / "a_file").write_text("a cache folder cannot be created under a file, not even by root")
    monkeypatch.setenv("MEDSEG_LAB_CACHE", str(tmp_path / "a_file" / "cache"))
    for f in (mni152._mni152_base_cached, mni152._tissue_cached): f.cache_clear()
    monkeypatch.setattr(mni152, "_UNWRITABLE", set())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = mni152.mni152_tissue(2, "val")
    assert tuple(ds.images.shape) == (16, 1, 160, 192)
    msgs = [str(x.message) for x in w if "cannot write" in str(x.message)]
    assert len(msgs) == 1 and "MEDSEG_LAB_CACHE" in msgs[0] and "a_file" in msgs[0], msgs


def test_same_seed_identical_different_seed_differs(fresh_cache):
    from medseg_lab.data.mni152 import mni152_lesions
    a, b, c = (mni152_lesions(2, "val", seed=s) for s in (5, 5, 6))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
