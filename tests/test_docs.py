"""The docs site (`make docs` = scripts/docs.py: Sphinx + myst-nb + sphinx-book-theme over the committed notebooks):
it builds, and every page, opened in headless Chromium, loads all its images and resources, shows every figure its
notebook was committed with, holds no Python traceback in an output, and links only to pages and anchors that exist;
the navigation lists every page, search finds an API name, API pages show signatures, backticked names link to their
API entry, and library code is told apart from tests."""
import os, shutil, subprocess, sys, json
from pathlib import Path
from urllib.parse import urlsplit, unquote
import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
PY = REPO / ".venv" / "bin" / "python"
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
try:
    from playwright.sync_api import sync_playwright
except ImportError:   # pragma: no cover
    sync_playwright = None
needs_browser = pytest.mark.skipif(CHROMIUM is None or sync_playwright is None,
                                   reason="needs Debian's chromium (`make setup` as root) and playwright (dev extra)")

_PAGE_JS = """() => {
  const imgs = [...document.querySelectorAll('article img, .bd-article img')];
  return {
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src').slice(0, 80)),
    output_images: document.querySelectorAll('.cell_output img').length,
    tracebacks: [...document.querySelectorAll('.cell_output, .output')].filter(
        o => o.classList.contains('traceback') || /Traceback \\(most recent call last\\)/.test(o.textContent)).length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  };
}"""


def check_pages(browser, pages: list, expected_images: dict) -> list:
    """Open every HTML file in `pages` in `browser`; return the problems found: resources that fail to load, images
    that do not decode, fewer output figures than `expected_images[page]`, tracebacks, links to missing files or
    anchors."""
    problems, ids, links = [], {}, []
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda r: failed.append(r.url) if r.url.startswith("file:") else None)
    for p in pages:
        failed.clear()
        page.goto(p.as_uri(), wait_until="load")
        r = page.evaluate(_PAGE_JS)
        name = p.name if p.parent.name != "api" else f"api/{p.name}"
        problems += [f"{name}: resource does not load: {u}" for u in failed]
        problems += [f"{name}: image does not decode: {s}" for s in r["broken_images"]]
        want = expected_images.get(p)
        if want is not None and r["output_images"] < want:
            problems.append(f"{name}: {r['output_images']} figures shown, the notebook has {want}")
        if r["tracebacks"]: problems.append(f"{name}: {r['tracebacks']} outputs hold a Python traceback")
        ids[p.resolve()] = set(r["ids"])
        links += [(name, u) for u in r["links"]]
    page.close()
    for name, u in links:
        s = urlsplit(u)
        if s.scheme != "file": continue
        target = Path(unquote(s.path)).resolve()
        if not target.exists(): problems.append(f"{name}: broken link {u}")
        elif s.fragment and target in ids and unquote(s.fragment) not in ids[target]:
            problems.append(f"{name}: link to a missing anchor {u}")
    return problems


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("docs")
    out = base / "_docs"
    p = subprocess.run([str(PY), str(REPO / "scripts/docs.py"), "--out", str(out), "--src", str(base / "src")],
                       capture_output=True, text=True, timeout=1500, cwd=REPO,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, (p.stdout + p.stderr)[-6000:]
    return out


def _pages(site):
    return json.loads((site / "pages.json").read_text())


def test_every_notebook_and_module_has_a_page(site):
    pages = _pages(site)
    nbexec = load_script("scripts/nbexec.py", "nbexec")
    docs = {p["doc"] for p in pages}
    for nb in nbexec.all_notebooks(): assert nb.relative_to(REPO / "nbs").with_suffix("").as_posix() in docs, nb
    for p in pages: assert (site / f"{p['doc']}.html").is_file(), p
    assert {"api/medseg_lab.metrics", "api/medseg_lab.train.loop", "api/index"} <= docs
    assert (site / "searchindex.js").is_file()


@needs_browser
def test_pages_render_in_headless_chromium(site):
    pages = _pages(site)
    expected = {(site / f"{p['doc']}.html"): p["images"] for p in pages}
    html = sorted(site.rglob("*.html"))
    html = [h for h in html if "_static" not in h.parts and "_modules" not in h.parts]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            problems = check_pages(browser, html, expected)
            pg = browser.new_page()
            # the left navigation of the landing page lists every page
            pg.goto((site / "index.html").as_uri())
            nav = set(pg.eval_on_selector_all(".bd-sidebar-primary a[href]", "as => as.map(a => a.href)"))
            missing = [p["doc"] for p in pages if p["doc"] != "index" and not p["doc"].startswith("api/medseg")
                       and (site / f"{p['doc']}.html").as_uri() not in nav]
            assert not missing, f"pages missing from the left navigation: {missing}"
            # search finds an API name
            pg.goto((site / "search.html").as_uri() + "?q=selective_scan")
            pg.wait_for_selector("#search-results li", timeout=20000)
            hits = pg.eval_on_selector_all("#search-results li a", "as => as.map(a => a.getAttribute('href'))")
            assert any("ssm" in h for h in hits), hits
            # API pages have signatures; names in backticks link to them; code and tests are told apart
            pg.goto((site / "api/medseg_lab.metrics.html").as_uri())
            sig = pg.inner_text("dl.py.function dt#medseg_lab\\.metrics\\.dice")
            assert "dice(" in sig and "num_classes" in sig, sig
            pg.goto((site / "02_metrics.html").as_uri())
            refs = pg.eval_on_selector_all("a.api-link", "as => as.map(a => a.getAttribute('href'))")
            assert any(r.endswith("medseg_lab.metrics.html#medseg_lab.metrics.dice") for r in refs), refs
            assert pg.locator(".cell.tag_nb-source").count() > 0 and pg.locator(".cell.tag_nb-test").count() > 0
            label = pg.eval_on_selector(".cell.tag_nb-test > .cell_input",
                                        "e => getComputedStyle(e, '::before').content")
            assert "test" in label, label
            keep = os.environ.get("MEDSEG_LAB_TEST_ARTIFACTS")    # screenshots for a person to look at
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                for doc in ("index", "02_metrics", "40_viz", "api/medseg_lab.metrics"):
                    pg.goto((site / f"{doc}.html").as_uri()); pg.set_viewport_size({"width": 1400, "height": 1000})
                    pg.screenshot(path=str(Path(keep) / f"docs_{doc.replace('/', '_')}.png"))
        finally:
            browser.close()
    assert not problems, "\n".join(problems[:40])


@needs_browser
def test_page_check_finds_what_breaks_a_page(tmp_path):
    "The checker above is not vacuous: a page with a missing image, a dead link, a bad anchor and a traceback fails."
    (tmp_path / "other.html").write_text('<html><body><p id="here">x</p></body></html>')
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><article><img src="missing.png"><a href="nowhere.html">x</a>'
                   '<a href="other.html#gone">y</a><a href="other.html#here">ok</a>'
                   '<div class="cell_output"><pre>Traceback (most recent call last):\n  ValueError</pre></div>'
                   '</article></body></html>')
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try: problems = check_pages(browser, [bad, tmp_path / "other.html"], {bad: 2})
        finally: browser.close()
    text = "\n".join(problems)
    for needle in ("resource does not load", "image does not decode", "figures shown", "traceback",
                   "broken link", "missing anchor"):
        assert needle in text, (needle, problems)
    assert "#here" not in text
