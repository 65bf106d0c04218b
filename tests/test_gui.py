"""napari viewers headless: the notebooks with `#| gui` cells run through papermill under xvfb-run, and their
screenshots show the brain and its labels (nbdev_test skips those cells: napari aborts inside it)."""
import base64, io, json, os, re, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PY = REPO / ".venv" / "bin" / "python"
GUI_NOTEBOOKS = sorted(p for p in (REPO / "nbs").rglob("*.ipynb")
                       if "experiments" not in p.parts and not any(part.startswith(('.', '_')) for part in p.relative_to(REPO / "nbs").parts)
                       and re.search(r'"#\|\s*gui', p.read_text(encoding="utf-8")))

needs_xvfb = pytest.mark.skipif(shutil.which("xvfb-run") is None,
                                reason="xvfb-run is not installed: `make setup` as root installs xvfb + Mesa (see APT_PKGS in the Makefile)")
needs_napari = pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import napari, PySide6"], capture_output=True).returncode != 0,
                                  reason="napari / PySide6-Essentials are not installed (pip install -e '.[gui]')")

def _pngs(nb_path: Path, marker: str) -> list:
    "RGBA arrays of the PNG outputs of code cells whose source contains `marker`."
    from PIL import Image
    nb = json.loads(nb_path.read_text())
    out = []
    for c in nb["cells"]:
        if c["cell_type"] == "code" and marker in "".join(c["source"]):
            for o in c.get("outputs", []):
                if "image/png" in o.get("data", {}):
                    out.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))).convert("RGBA")))
    return out

def _colour_fraction(arr, rgb):
    "Fraction of pixels whose colour is dominated by the dominant channel of `rgb` (a class colour of medseg_lab.viz)."
    px = arr[..., :3].astype(int); main = int(np.argmax(rgb)); others = [i for i in range(3) if i != main]
    return float(((px[..., main] > 100) & (px[..., main] > px[..., others].max(-1) + 50)).mean())

def test_gui_notebooks_found():
    assert any(p.name == "40_viz.ipynb" for p in GUI_NOTEBOOKS), GUI_NOTEBOOKS

@needs_xvfb
@needs_napari
@pytest.mark.parametrize("nb", GUI_NOTEBOOKS, ids=lambda p: p.name)
def test_gui_notebook_runs_under_xvfb(nb, tmp_path):
    out = tmp_path / nb.name
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    env.pop("MEDSEG_LAB_VIEWER", None)
    # like nbdev_test: cells flagged `#| slow` / `#| gpu` are left out (papermill alone would run every cell)
    import nbformat
    src = nbformat.read(nb, as_version=4)
    src.cells = [c for c in src.cells if not (c.cell_type == "code" and any(
        l.strip().replace(" ", "") in ("#|slow", "#|gpu") for l in c.source.splitlines()[:3]))]
    fast = tmp_path / ("fast_" + nb.name); nbformat.write(src, fast)
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1200x24", str(PY), "-m", "papermill", str(fast), str(out),
           "-k", "medseg_lab", "--cwd", str(nb.parent), "--no-progress-bar"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    if nb.name != "40_viz.ipynb": return
    from medseg_lab.viz import class_color
    shots = _pngs(out, "show_volume(t1, tissue, baseline")
    assert len(shots) == 2, f"expected the 3D and 2D napari screenshots, found {len(shots)}"
    for arr in shots:
        assert arr.shape[0] >= 400 and arr.shape[1] >= 600, arr.shape
        assert arr[..., :3].max() > 100 and arr[..., :3].mean() > 10, "screenshot is (nearly) black"
        assert _colour_fraction(arr, class_color(1)) > 0.01, "grey matter (red) not visible"
        assert _colour_fraction(arr, class_color(2)) > 0.005, "white matter (green) not visible"
    # the executed notebook says it used napari, not the fallback
    text = out.read_text()
    assert "Rendering(backend='napari'" in text
    shutil.copy(out, tmp_path / "executed_40_viz.ipynb")
    keep = os.environ.get("MEDSEG_LAB_TEST_ARTIFACTS")
    if keep:
        from PIL import Image
        Path(keep).mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(shots): Image.fromarray(arr).save(Path(keep) / f"napari_screenshot_{i}.png")

def test_viewer_falls_back_to_plotly_without_napari(tmp_path):
    "No display and no Xvfb to start: show_volume returns a plotly rendering, says why, never raises."
    code = f"""
import numpy as np
from medseg_lab import viz
img = np.random.rand(24, 24, 24).astype('float32'); lab = np.zeros((24, 24, 24), int); lab[6:18, 6:18, 6:18] = 1
r = viz.show_volume(img, lab, lab, screenshot=r'{tmp_path / "fb.png"}')
print('BACKEND', r.backend, r.path.suffix, bool(r.note))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MEDSEG_LAB_VIEWER")}
    env.update(OMP_NUM_THREADS="1", PATH=str(tmp_path))      # no Xvfb on the PATH
    p = subprocess.run([str(PY), "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "napari could not render here" in p.stdout and "showing a plotly 3D rendering instead" in p.stdout
    line = [l for l in p.stdout.splitlines() if l.startswith("BACKEND")][0]
    assert line.split()[1] == "plotly" and line.split()[3] == "True"
    assert line.split()[2] in (".png", ".html")
