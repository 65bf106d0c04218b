"""The docs site (`make docs` = scripts/build_docs.py): built from a few executed notebooks, it opens in headless
Chromium with its figures (index, a model page, the viewer page with the napari screenshot), and no link inside the
site is broken."""
import html.parser, json, os, shutil, subprocess, sys
from pathlib import Path
from urllib.parse import urlsplit, unquote
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PY = REPO / ".venv" / "bin" / "python"
SUBSET = ["nbs/index.ipynb", "nbs/10_unet.ipynb", "nbs/40_viz.ipynb"]   # the overview, one model page, the viewers
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "_docs"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run([str(PY), str(REPO / "scripts/build_docs.py"), "--out", str(out), *[str(REPO / n) for n in SUBSET]],
                       capture_output=True, text=True, timeout=1500, env=env, cwd=str(REPO))
    assert p.returncode == 0, (p.stdout + p.stderr)[-5000:]
    return out

def test_site_has_every_page_and_an_index(site):
    pages = json.loads((site / "pages.json").read_text())
    assert [p["html"] for p in pages] == ["overview.html", "10_unet.html", "40_viz.html"]
    assert all(p["status"] == "ok" for p in pages), pages
    index = (site / "index.html").read_text()
    for p in pages: assert f'href="{p["html"]}"' in index
    assert "Viewers and figures" in index and "UNet" in index

def test_pages_carry_figures_and_hide_test_scaffolding(site):
    viz = (site / "40_viz.html").read_text()
    assert viz.count("data:image/png;base64") >= 6, "matplotlib, plotly (kaleido) and napari figures are inline PNGs"
    napari_shots = [a for a in _pngs(viz) if a.shape[:2] == (600, 900)]            # show_volume's default screenshot size
    assert len(napari_shots) >= 2, "the 3D and 2D napari screenshots are missing from the viewer page"
    for a in napari_shots:
        red = (a[..., 0] > 180) & (a[..., 1] < 90) & (a[..., 2] < 120)             # class 1 (grey matter) colour
        assert red.mean() > 0.01, "a napari screenshot on the page shows no labels"
    assert "#| export" not in viz and "test_fail(lambda: overlay(t1, tissue, index=500)" not in viz   # hide cells and directives
    assert "open this notebook in JupyterLab" in viz                     # the live widget is replaced by a note
    assert 'class="msl-nav"' in viz

def _pngs(page_html: str) -> list:
    "RGB arrays of the inline PNG images of a page."
    import base64, io, re
    from PIL import Image
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB"))
            for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page_html)]

class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.links = []
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v: self.links.append(v)

def test_no_broken_internal_links(site):
    broken, checked = [], 0
    for page in site.rglob("*.html"):
        parser = _Links(); parser.feed(page.read_text(encoding="utf-8"))
        for link in parser.links:
            u = urlsplit(link)
            if u.scheme or u.netloc or link.startswith(("#", "data:", "mailto:", "javascript:")): continue
            target = (page.parent / unquote(u.path)).resolve()
            checked += 1
            if not target.exists(): broken.append(f"{page.relative_to(site)} -> {link}")
    assert checked >= 6, checked
    assert not broken, broken

def _screenshot(url: str, png: Path, size=(1280, 3000)):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
           f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=15000", f"--screenshot={png}", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.exists(), p.stderr[-2000:]
    from PIL import Image
    return np.asarray(Image.open(png).convert("RGB"))

def _dom(url: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=15000",
           "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout

@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: `make setup` as root installs Debian's chromium (APT_PKGS in the Makefile)")
def test_pages_render_in_headless_chromium(site, tmp_path):
    shots = Path(os.environ.get("MEDSEG_LAB_TEST_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    # the index: a table of links, rendered
    dom = _dom((site / "index.html").as_uri())
    assert "40_viz.html" in dom and "medseg_lab" in dom
    idx = _screenshot((site / "index.html").as_uri(), shots / "docs_index.png", size=(1280, 900))
    assert idx.std() > 5, "index page renders blank"
    # a model page renders (code, outputs, navigation)
    dom = _dom((site / "10_unet.html").as_uri())
    assert "UNet" in dom and "msl-nav" in dom and "jp-OutputArea" in dom
    _screenshot((site / "10_unet.html").as_uri(), shots / "docs_model_page.png", size=(1280, 1400))
    # the viewer page: its figures are decoded images in the browser, and the class colours show on screen
    dom = _dom((site / "40_viz.html").as_uri())
    assert dom.count("<img") >= 6
    page = _screenshot((site / "40_viz.html").as_uri(), shots / "docs_viz_page.png", size=(1280, 12000))
    red = (page[..., 0] > 180) & (page[..., 1] < 90) & (page[..., 2] < 120)        # class 1 colour (230, 25, 75)
    assert red.mean() > 0.001, "no label colours visible on the rendered viewer page"
