"""The committed notebooks as a reader sees them: executed outputs that are fresh (`make execute` recorded the hash of
the code that produced them), small enough for the repository page, without embedded JavaScript, and kept by
`nbdev_clean`."""
import copy, json, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
nbexec = load_script("scripts/nbexec.py", "nbexec")
NOTEBOOKS = nbexec.all_notebooks()
MAX_NBS_BYTES = 25 * 2**20
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="  # 1x1


def _rel(p): return p.relative_to(REPO / "nbs").as_posix()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=_rel)
def test_outputs_are_fresh(nb):
    """A notebook's outputs come from its current code: `make execute NB=<it>` after editing a code cell. Notebooks
    never executed are only required once settings.ini `executed_notebooks` names them (`*` = all)."""
    state, why = nbexec.freshness(nb)
    if state == "stale":
        pytest.fail(f"{_rel(nb)}: outputs are stale, {why}: run `make execute NB=nbs/{_rel(nb)}` and commit it")
    if state == "never executed":
        if nbexec.is_required(nb):
            pytest.fail(f"{_rel(nb)} is committed without outputs ({why}): run `make execute NB=nbs/{_rel(nb)}`")
        pytest.skip(f"not executed yet, and not yet required by settings.ini executed_notebooks")


def test_required_list_names_notebooks():
    "Every glob in settings.ini `executed_notebooks` matches a notebook (a typo must not silently require nothing)."
    globs = nbexec.required_notebooks()
    assert globs, "settings.ini executed_notebooks is empty"
    for g in globs: assert any(nbexec.is_required(p, [g]) for p in NOTEBOOKS), f"executed_notebooks: {g!r} matches nothing"


def _demo_nb():
    "A small notebook with outputs and the metadata `make execute` writes."
    nb = dict(nbformat=4, nbformat_minor=5, metadata={"kernelspec": {"name": "medseg_lab", "display_name": "x",
                                                                      "language": "python"}}, cells=[
        dict(cell_type="markdown", id="a1", metadata={}, source="# Title\nprose"),
        dict(cell_type="code", id="a2", metadata={"tags": ["parameters"]}, execution_count=1, source="x = 1",
             outputs=[]),
        dict(cell_type="code", id="a3", metadata={}, execution_count=2, source="x + 1",
             outputs=[dict(output_type="execute_result", execution_count=2, metadata={},
                           data={"text/plain": "2", "image/png": PNG})])])
    nb["metadata"]["medseg_lab"] = dict(source_hash=nbexec.source_hash(nb), version="0.1.0", executed_utc="now")
    return nb


def test_freshness_follows_code_not_prose(tmp_path):
    "Editing a code cell makes the outputs stale; editing prose or trailing whitespace does not."
    nb = _demo_nb(); p = tmp_path / "n.ipynb"
    p.write_text(json.dumps(nb)); assert nbexec.freshness(p)[0] == "fresh"
    prose = copy.deepcopy(nb); prose["cells"][0]["source"] = "# Title\nother prose"
    p.write_text(json.dumps(prose)); assert nbexec.freshness(p)[0] == "fresh"
    ws = copy.deepcopy(nb); ws["cells"][2]["source"] = "x + 1   \n"
    p.write_text(json.dumps(ws)); assert nbexec.freshness(p)[0] == "fresh"
    code = copy.deepcopy(nb); code["cells"][2]["source"] = "x + 2"
    p.write_text(json.dumps(code)); state, why = nbexec.freshness(p)
    assert state == "stale" and "code changed" in why
    del code["metadata"]["medseg_lab"]; p.write_text(json.dumps(code))
    assert nbexec.freshness(p)[0] == "never executed"


def test_nbdev_clean_keeps_outputs_and_execution_metadata(tmp_path):
    "`make export` runs nbdev_clean: the outputs, the `medseg_lab` metadata and papermill's tag must survive it."
    nb = _demo_nb(); nb["metadata"]["papermill"] = {"duration": 1}
    f = tmp_path / "n.ipynb"; f.write_text(json.dumps(nb))
    p = subprocess.run([str(REPO / ".venv/bin/nbdev_clean"), "--fname", str(f)], capture_output=True, text=True,
                       cwd=REPO, timeout=120)                                  # settings.ini found from the cwd
    assert p.returncode == 0 and "Failed" not in p.stderr, p.stderr
    out = json.loads(f.read_text())
    assert out["metadata"]["medseg_lab"] == nb["metadata"]["medseg_lab"]
    assert "papermill" not in out["metadata"]                                  # it does clean what it should
    assert out["cells"][2]["outputs"][0]["data"]["image/png"] == PNG
    assert out["cells"][1]["metadata"]["tags"] == ["parameters"]
    assert nbexec.source_hash(out) == nb["metadata"]["medseg_lab"]["source_hash"]


def test_nbs_folder_is_small():
    "The executed notebooks (images downscaled, no JavaScript) keep nbs/ under 25 MB."
    skip = {".ipynb_checkpoints", "__pycache__"}
    total = sum(f.stat().st_size for f in (REPO / "nbs").rglob("*") if f.is_file() and not skip & set(f.parts))
    assert total < MAX_NBS_BYTES, f"nbs/ holds {total / 2**20:.1f} MB (limit 25 MB): downscale images or drop outputs"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=_rel)
def test_no_embedded_javascript_or_live_widgets(nb):
    "No widget state, live-widget outputs, `application/javascript` or `<script>` HTML in a committed notebook."
    d = json.loads(nb.read_text(encoding="utf-8"))
    assert "widgets" not in d["metadata"], f"{_rel(nb)} carries widget state (JavaScript bundles): re-execute it"
    for i, c in enumerate(d["cells"]):
        for o in c.get("outputs", []):
            data = o.get("data", {})
            assert nbexec.WIDGET_VIEW not in data, f"{_rel(nb)} cell {i}: a live widget output (no static render)"
            assert "application/javascript" not in data, f"{_rel(nb)} cell {i}: embedded JavaScript"
            html = data.get("text/html", "")
            assert "<script" not in ("".join(html) if isinstance(html, list) else html), f"{_rel(nb)} cell {i}: <script>"


def test_static_widget_render_keeps_figures_and_names_controls():
    "A live widget becomes its Output widgets' figures and a line with its controls' values (what GitHub can show)."
    state = {"box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_sl", "IPY_MODEL_out"]}},
             "sl": {"model_name": "IntSliderModel", "state": {"description": "first row", "value": 60}},
             "out": {"model_name": "OutputModel", "state": {"outputs": [
                 {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG,
                                                                          "text/plain": "<Figure>"}}]}}}
    outs = nbexec.static_outputs([{"output_type": "display_data", "metadata": {},
                                   "data": {nbexec.WIDGET_VIEW: {"model_id": "box"}, "text/plain": "VBox(...)"}}], state)
    assert len(outs) == 2 and "first row = 60" in outs[0]["data"]["text/plain"]
    assert outs[1]["data"]["image/png"] == PNG
    bar = {"b": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_h", "IPY_MODEL_p"]}},
           "h": {"model_name": "HTMLModel", "state": {"value": "train: 100%"}},
           "p": {"model_name": "FloatProgressModel", "state": {"value": 5, "max": 5}}}
    outs = nbexec.static_outputs([{"output_type": "display_data", "metadata": {},
                                   "data": {nbexec.WIDGET_VIEW: {"model_id": "b"}}}], bar)
    assert outs == [{"output_type": "stream", "name": "stderr", "text": "train: 100%\n"}]


def test_large_images_are_downscaled():
    import base64, io
    import numpy as np
    from PIL import Image
    buf = io.BytesIO(); Image.fromarray((np.random.rand(1800, 3000, 3) * 255).astype("uint8")).save(buf, "PNG")
    b64, meta = nbexec._shrink(base64.b64encode(buf.getvalue()).decode(), "image/png", {"image/png": {"width": 3000}})
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert max(im.size) == nbexec.MAX_SIDE and meta == {}
    assert im.mode == "P", "a PNG still too large after downscaling is re-encoded with a 256-colour palette"


def test_parameters_are_injected_after_the_parameters_cell():
    "`make reproduce PARAMS=...` overrides an experiment's defaults the way papermill does, in a cell of its own."
    import nbformat
    nb = nbformat.from_dict(_demo_nb())
    nbexec.inject_parameters(nb, {"x": 5, "name": "real"})
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"] and "x = 5" in nb.cells[2].source
    assert "name = 'real'" in nb.cells[2].source
    del nb.cells[1].metadata["tags"]
    with pytest.raises(ValueError, match="parameters"): nbexec.inject_parameters(nb, {"x": 1})
