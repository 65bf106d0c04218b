"""README.md is generated from nbs/index.ipynb (`make readme`); it must not drift from the notebook."""
import subprocess, sys

def test_readme_matches_index(repo, tmp_path):
    r = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "markdown", "--no-input",
                        str(repo / "nbs/index.ipynb"), "--output-dir", str(tmp_path), "--output", "README"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "README.md").read_text() == (repo / "README.md").read_text(), \
        "README.md is out of date: run `make readme` and commit it"

def test_readme_states_the_two_commands(repo):
    text = (repo / "README.md").read_text()
    assert "make run" in text and "make test" in text
