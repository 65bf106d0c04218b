"""Data cards are found from an imported (not notebook) medseg_lab.data, from any working directory, and MEDSEG_LAB_CARDS overrides them."""
import os, subprocess, sys, textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cards_found_from_package_file(tmp_path):
    "From an unrelated cwd, cards resolve through Path(__file__).parents[2]/'data_cards' and all validate."
    env = {k: v for k, v in os.environ.items() if k != 'MEDSEG_LAB_CARDS'}
    r = subprocess.run([sys.executable, '-c', textwrap.dedent('''
        from medseg_lab.data import cards_dir, list_cards, load_card
        names = list_cards()
        for n in names: load_card(n)
        print(cards_dir(), len(names))
    ''')], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    path, n = r.stdout.split()
    assert Path(path) == REPO / 'data_cards' and int(n) >= 23


def test_env_override_and_broken_card(tmp_path):
    "MEDSEG_LAB_CARDS points at another folder; a broken card there fails validation with the field named."
    good = (REPO / 'data_cards' / 'kvasir_seg.yaml').read_text()
    (tmp_path / 'kvasir_seg.yaml').write_text(good.replace('spatial_dims: 2', 'spatial_dims: two'))
    env = {**os.environ, 'MEDSEG_LAB_CARDS': str(tmp_path)}
    r = subprocess.run([sys.executable, '-c', textwrap.dedent('''
        from medseg_lab.data import list_cards, load_card
        assert list_cards() == ['kvasir_seg'], list_cards()
        try: load_card('Kvasir-SEG')
        except ValueError as e: print(e)
        else: raise SystemExit('broken card loaded')
    ''')], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "field 'spatial_dims' must be int" in r.stdout
