#!/usr/bin/env python
"""Time the README's commands on a fresh clone and write nbs/results/index.json (`make time-commands`).

    python scripts/time_commands.py [--commands setup test run] [--keep]

The clone is made from this checkout's HEAD into a temporary folder, so the times include nothing left over from
here (no venv, no caches). `make setup` is timed on its own, then each command; the README (nbs/index.ipynb)
renders its run-time table from the results file this writes (then run `make execute NB=nbs/index.ipynb readme`).
"""
from __future__ import annotations
import argparse, shutil, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHAT = {'setup': 'creates .venv (PyTorch CPU build, the package, dev tools, the Jupyter kernel)',
        'test': 'check-export, nbdev_test over every notebook, pytest',
        'run': 'train_eval (UNet baseline on mni152_tissue), then the model zoo on mni152_tissue'}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--commands', nargs='+', default=['setup', 'test', 'run'], choices=list(WHAT))
    ap.add_argument('--keep', action='store_true', help='keep the clone (its path is printed)')
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix='medseg_lab-clone-'))
    clone = tmp / 'medseg_lab'
    subprocess.run(['git', 'clone', '--quiet', str(REPO), str(clone)], check=True)
    results = {}
    try:
        for cmd in a.commands:
            t0 = time.perf_counter()
            p = subprocess.run(['make', cmd], cwd=clone)
            secs = time.perf_counter() - t0
            print(f"time-commands: make {cmd}: {secs / 60:.1f} min (exit {p.returncode})", flush=True)
            if p.returncode:
                print(f"time-commands: make {cmd} failed; nothing written", file=sys.stderr); return 1
            results[f'make {cmd}'] = dict(what=WHAT[cmd], seconds=round(secs, 1))
    finally:
        if not a.keep: shutil.rmtree(tmp, ignore_errors=True)
        else: print(f"time-commands: clone kept in {clone}")
    sys.path.insert(0, str(REPO))
    from medseg_lab.results import save_results
    head = subprocess.run(['git', '-C', str(REPO), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
    path = save_results('index', results, command='make time-commands', setting=dict(clone_of=head, fresh_clone=True),
                        folder=REPO / 'nbs' / 'results')
    print(f"time-commands: wrote {path}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
