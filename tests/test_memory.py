"""The memory benchmark's instrument, and the README's memory claim checked at its stated bound.

`benchmarks/memory.py` measures the peak resident memory of a fresh process per case; the README states that the
MM-UNet paper preset runs inference on a 64^3 patch within `README_CLAIMS['mmunet-paper-64-infer']` GiB. CI measures it
here, in a subprocess, exactly as the benchmark does.
"""
from pathlib import Path
import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _bench():
    return load_script("benchmarks/memory.py", "memory_bench")


def test_probe_sees_the_activations():
    "The instrument measures something: a 16-image batch of a UNet training step takes far more than one image."
    M = _bench()
    case = M.Case("unet-tiny-256", "unet", "tiny", (1, 256, 256), 1)
    one, sixteen = M.probe(case, batch=1), M.probe(case, batch=16)
    # unet tiny at 256^2: >= 8 channels x 65,536 pixels x 4 bytes per full-resolution map, a dozen such maps and their
    # gradients per image: at least 100 MiB more for 15 more images
    assert sixteen["peak"] - one["peak"] > 100 * 2**20, (one, sixteen)
    assert one["after_import"] <= one["after_build"] <= one["peak"]   # a tiny model may not move RSS by a page
    assert one["params"] == sixteen["params"] > 0


def test_readme_memory_claim():
    "The README's sentence: MM-UNet's 3D paper preset, one 1x1x64^3 patch, inference within the stated GiB (peak anonymous memory)."
    M = _bench()
    key = "mmunet-paper-64-infer"
    bound = M.README_CLAIMS[key]
    r = M.probe(M.CASE[key])
    peak_gib = r["peak_anon"] / 2**30                # heap, tensors, Python: not the mapped libraries (machine-dependent)
    assert r["params"] > 30e6                        # it is the paper preset (37 M parameters), not a small model
    assert peak_gib <= bound, f"{key}: peak anonymous memory {peak_gib:.3f} GiB exceeds the README's {bound} GiB"


def test_cli_lists_and_rejects(capsys):
    M = _bench()
    M.main(["--list"])
    assert "mmunet-paper-64-infer" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="valid: unet-paper-352"):
        M.main(["--cases", "nnunet-2d", "--no-save"])
    assert set(M.README_CLAIMS) <= set(M.CASE)
