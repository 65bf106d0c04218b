"""`make check-export` must fail, naming the file, when medseg_lab/ drifts from the notebooks."""
import shutil, subprocess
from pathlib import Path

def _copy_repo(repo: Path, dst: Path) -> Path:
    for name in ["settings.ini", "Makefile", "setup.py"]: shutil.copy(repo / name, dst / name)
    shutil.copytree(repo / "nbs", dst / "nbs")
    shutil.copytree(repo / "medseg_lab", dst / "medseg_lab", ignore=shutil.ignore_patterns("__pycache__"))
    (dst / ".venv").symlink_to(repo / ".venv")   # re-use the installed tools; stamps make setup a no-op
    return dst

def _check(d: Path):
    return subprocess.run(["make", "-s", "check-export", f"BIN={d / '.venv' / 'bin'}", "READY="],
                          cwd=d, capture_output=True, text=True)

def test_check_export_passes_on_clean_tree(repo, tmp_path):
    r = _check(_copy_repo(repo, tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "equals nbdev_export" in r.stdout

def test_check_export_names_hand_edited_file(repo, tmp_path):
    d = _copy_repo(repo, tmp_path)
    core = d / "medseg_lab" / "core.py"
    core.write_text(core.read_text() + "\n# a hand edit\n")
    (d / "medseg_lab" / "stray.py").write_text("x = 1\n")
    r = _check(d)
    assert r.returncode != 0
    assert "core.py" in r.stdout and "stray.py" in r.stdout, r.stdout
