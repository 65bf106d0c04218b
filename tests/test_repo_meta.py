"""What a clone carries besides the code: a LICENSE matching settings.ini, a citation file, and a README written for
readers (no paths of the developers' machines, the install section, the commands it promises exist in the Makefile)."""
import configparser, re
from pathlib import Path
import yaml

REPO = Path(__file__).resolve().parents[1]
_cfg = configparser.ConfigParser(delimiters=["="]); _cfg.read(REPO / "settings.ini", encoding="utf-8")
INI = _cfg["DEFAULT"]
LICENSES = {"apache2": ("Apache License", "Version 2.0", "Apache-2.0")}

def test_license_file_matches_settings():
    head, version, spdx = LICENSES[INI["license"]]
    text = (REPO / "LICENSE").read_text()
    assert head in text[:400] and version in text[:400]
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["license"] == spdx and str(cff["version"]) == INI["version"] and cff["cff-version"]

def test_readme_is_written_for_readers():
    text = (REPO / "README.md").read_text()
    assert not re.search(r"\.\./shared|/work/|official_code_facts|paper_targets", text), "a path of ours in the README"
    for section in ("## Install", "## Two commands", "## Quick start in Python", "## Your own data",
                    "## Predict and evaluate", "## Where results land", "## The methods", "## Licence and citation"):
        assert section in text, section
    assert f"Python ≥ {INI['min_python']}" in text

def test_make_targets_the_readme_names_exist():
    make = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", make, re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)", (REPO / "README.md").read_text()))
    assert named and named <= targets, named - targets
