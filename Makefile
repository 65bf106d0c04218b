# medseg_lab: the two commands a newcomer needs are `make run` and `make test`.
# Every target creates .venv at the repo root on first use (torch CPU build first, then the package + dev tools,
# then the Jupyter kernel) and re-uses it afterwards: stamps in .venv/ record what is installed.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BIN := $(CURDIR)/$(VENV)/bin
TORCH_STAMP := $(VENV)/.stamp-torch
READY := $(VENV)/.stamp-ready
SYSDEPS := $(VENV)/.stamp-sysdeps
KERNEL := medseg_lab
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg
# Debian packages for napari under a virtual display (Xvfb + Mesa's software OpenGL + Qt's xcb platform) and Chromium
# (kaleido's static plotly images, the docs test). Installed by `make setup` when run as root; otherwise printed.
APT_PKGS := xvfb xauth libgl1-mesa-dri libegl1 libgl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
  libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 \
  libfontconfig1 fonts-dejavu-core chromium

# make run knobs (papermill parameters of nbs/experiments/train_eval.ipynb)
MODEL ?= unet
PRESET ?= small
DATA ?= mni152_tissue
BUDGET ?= 150
# make zoo knobs (papermill parameters of nbs/experiments/model_zoo.ipynb): every model, the same optimiser steps,
# several seeds; with the defaults `make run` (train-eval + zoo) takes under 10 minutes on 2 CPU cores. The default task
# is the real tissue task with nnU-Net's foreground batch Dice: every method learns it within the budget (on the
# lesion task several of them have not started to find lesions after 150 steps); ZOO_DATA=mni152_lesions for lesions
ZOO_PRESET ?= small
ZOO_STEPS ?= 150
ZOO_SEEDS ?= 0, 1
ZOO_BATCH ?= 8
ZOO_DATA ?= mni152_tissue
ZOO_LOSS ?= dice
ZOO_LOSS_KWARGS ?= include_background: false, batch_dice: true
ZOO_SIZE ?= 64, 64
ZOO_THREADS ?= 2
RUNS ?= $(CURDIR)/runs

.PHONY: all setup run train-eval zoo readme-results test lab export docs readme check-export nbtest pytest execute stale reproduce time-commands clean

all: test

setup: $(READY) $(SYSDEPS)

$(PY):
	python3 -m venv $(VENV)

$(TORCH_STAMP): | $(PY)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	touch $@

# system packages: installed once (stamp), skipped with the apt line printed when not root or apt-get is missing
$(SYSDEPS): | $(PY)
	@if dpkg-query -W -f='$${Status}\n' $(APT_PKGS) 2>/dev/null | grep -c '^install ok installed' | grep -qx "$(words $(APT_PKGS))"; then \
	  echo "system packages: all present"; touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "system packages: apt-get install -y --no-install-recommends $(APT_PKGS)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  if apt-get update -q && apt-get install -y -q --no-install-recommends $(APT_PKGS); then touch $@; \
	  else echo "WARNING: apt-get failed: napari viewer / docs browser tests will be skipped"; fi; \
	else \
	  echo "WARNING: not root (or no apt-get): the napari viewer and docs browser tests need, as root:"; \
	  echo "  apt-get install -y --no-install-recommends $(APT_PKGS)"; \
	fi

$(READY): $(TORCH_STAMP) setup.py settings.ini
	$(PIP) install -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name $(KERNEL)
	touch $@

## run: train_eval (the UNet baseline on the bundled real MRI sample), then the model zoo (every model in MODELS, 2D,
## the same optimiser steps, ZOO_SEEDS seeds, on mni152_tissue); everything lands in runs/, the work tree stays clean
run: train-eval zoo

train-eval: $(READY)
	mkdir -p $(RUNS)
	ts=$$(date -u +%Y%m%dT%H%M%SZ); \
	$(BIN)/papermill nbs/experiments/train_eval.ipynb $(RUNS)/train_eval-$(MODEL)-$$ts.ipynb \
	  -k $(KERNEL) --cwd nbs/experiments --log-output --no-progress-bar \
	  -p model $(MODEL) -p preset $(PRESET) -p data $(DATA) -p time_budget_s $(BUDGET) \
	  -p out_dir $(RUNS) ; \
	echo "Executed notebook: $(RUNS)/train_eval-$(MODEL)-$$ts.ipynb"

## zoo: nbs/experiments/model_zoo.ipynb in its real setting (knobs ZOO_*); exits non-zero when a model fails, after
## writing the tables (runs/model_zoo-<UTC timestamp>/zoo_results.md); `make readme-results` copies the table to README
zoo: $(READY)
	mkdir -p $(RUNS)
	ts=$$(date -u +%Y%m%dT%H%M%SZ); rc=0; \
	$(BIN)/papermill nbs/experiments/model_zoo.ipynb $(RUNS)/model_zoo-$$ts.ipynb \
	  -k $(KERNEL) --cwd nbs/experiments --log-output --no-progress-bar \
	  -p preset $(ZOO_PRESET) -p steps $(ZOO_STEPS) -y "seeds: [$(ZOO_SEEDS)]" -p batch_size $(ZOO_BATCH) \
	  -p data $(ZOO_DATA) -y "data_kwargs: {size: [$(ZOO_SIZE)]}" -p loss $(ZOO_LOSS) \
	  -y "loss_kwargs: {$(ZOO_LOSS_KWARGS)}" -p validations 3 -p paper_presets True \
	  -p timing_steps 3 -p num_threads $(ZOO_THREADS) -p out_dir $(RUNS) || rc=$$?; \
	zoo=$$(ls -td $(RUNS)/model_zoo-*/ 2>/dev/null | head -1); \
	if [ -n "$$zoo" ] && [ -f "$$zoo"zoo_results.md ]; then cat "$$zoo"zoo_results.md; fi; \
	echo "Executed notebook: $(RUNS)/model_zoo-$$ts.ipynb; tables in $$zoo"; \
	if [ $$rc -ne 0 ]; then echo "make zoo: the model zoo FAILED (exit $$rc): see the notebook above"; fi; \
	exit $$rc

## readme-results: the latest zoo table (runs/model_zoo-*/zoo_results.md) into nbs/results/model_zoo.json, from which
## the README's results section is rendered (nbs/index.ipynb re-executed, README regenerated)
readme-results: $(READY) $(SYSDEPS)
	@zoo=$$(ls -td $(RUNS)/model_zoo-*/ 2>/dev/null | head -1); \
	if [ -z "$$zoo" ] || [ ! -f "$$zoo"zoo_results.md ]; then echo "no zoo results under $(RUNS): run 'make zoo' first"; exit 1; fi; \
	$(PY) -c "import sys, json, glob; from medseg_lab.results import save_results as s; z = sys.argv[1]; \
	  c = {json.load(open(f)).get('versions', {}).get('commit') for f in glob.glob(z + 'runs/*/metrics.json')}; \
	  c = c.pop() if len(c) == 1 else None; \
	  print(f'commit of the code that trained the zoo: {c}' if c else 'the zoo runs name no single commit: recording this checkout\'s'); \
	  s('model_zoo', dict(markdown=open(z + 'zoo_results.md').read(), zoo_folder=z.rstrip('/').split('/')[-1]), \
	    command='make zoo && make readme-results', folder='nbs/results', commit=c)" "$$zoo"; \
	echo "nbs/results/model_zoo.json: $${zoo}zoo_results.md"
	$(PY) scripts/nbexec.py nbs/index.ipynb
	$(MAKE) readme

## test: exported package == notebooks, every notebook runs (nbdev_test), then pytest
test: check-export nbtest pytest

check-export: $(READY)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp settings.ini "$$tmp"/; cp -r nbs "$$tmp"/nbs; mkdir -p "$$tmp"/medseg_lab; \
	cp medseg_lab/__init__.py "$$tmp"/medseg_lab/; \
	(cd "$$tmp" && $(BIN)/nbdev_export) ; \
	if ! diff -r -q -x __pycache__ "$$tmp"/medseg_lab medseg_lab > "$$tmp"/diff.txt; then \
	  echo "medseg_lab/ differs from what nbdev_export produces from nbs/ -- run 'make export' and commit:"; \
	  sed "s#$$tmp/##g" "$$tmp"/diff.txt; exit 1; \
	else echo "check-export: medseg_lab/ equals nbdev_export of nbs/"; fi

# nbdev_test and pytest read the bundled data from caches of their own inside the checkout, made fresh on every run
# (never the user's ~/.cache/medseg_lab, whose entries may come from older code). CI must build the compiled CPU kernel:
# MEDSEG_LAB_NO_CPU_KERNEL (the explicit opt-out) is refused when CI is set.
TEST_CACHE := $(CURDIR)/.cache/test
define no_kernel_optout
	@if [ -n "$$CI" ] && [ -n "$$MEDSEG_LAB_NO_CPU_KERNEL" ] && [ "$$MEDSEG_LAB_NO_CPU_KERNEL" != 0 ]; then \
	  echo "CI must test the compiled CPU kernel: unset MEDSEG_LAB_NO_CPU_KERNEL"; exit 1; fi
endef

# nbtest takes ~10 min on 2 cores; a notebook that hangs (a lock never released, a kernel never answering) stops it
# here, with the notebooks still running named in the log, instead of running into the CI limit
NBTEST_TIMEOUT ?= 50m
## nbtest: every notebook (library, demos/, experiments/ with their parameters-cell defaults), slow/gpu/gui cells left out
nbtest: $(READY)
	$(no_kernel_optout)
	rm -rf $(TEST_CACHE)/nbtest && mkdir -p $(TEST_CACHE)/nbtest
	MEDSEG_LAB_CACHE=$(TEST_CACHE)/nbtest OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 \
	  timeout -k 30 $(NBTEST_TIMEOUT) $(BIN)/nbdev_test --n_workers 2 --timing --do_print --skip_folder_re '^[_.]' \
	  || { rc=$$?; [ $$rc -eq 124 ] && echo "nbtest: stopped after $(NBTEST_TIMEOUT): a notebook above has 'Starting' without '- Completed'"; exit $$rc; }

pytest: $(READY) $(SYSDEPS)
	$(no_kernel_optout)
	rm -rf $(TEST_CACHE)/pytest && mkdir -p $(TEST_CACHE)/pytest
	MEDSEG_LAB_TEST_CACHE=$(TEST_CACHE)/pytest $(BIN)/pytest tests -q -p no:cacheprovider -p no:napari --timeout 900 --durations 15

## execute: run the notebooks in their CI setting (slow/gpu cells left out, napari cells under Xvfb) and write them back
## WITH outputs and the hash of their code (tests/test_notebooks.py checks it); NB="nbs/10_unet.ipynb nbs/demos" for a
## subset, JOBS=2 notebooks at a time. Commit the notebooks afterwards.
NB ?=
JOBS ?= 2
execute: $(READY) $(SYSDEPS)
	$(PY) scripts/nbexec.py --jobs $(JOBS) $(NB)

## stale: which notebooks' outputs are stale (code changed since `make execute`) or were never executed
stale: $(READY)
	$(PY) scripts/nbexec.py --check $(NB)

## reproduce NB=nbs/demos/<name>.ipynb: rerun a notebook's slow setting (its `#| slow` cells; FLAGS="slow gpu" on a GPU
## machine), which rewrites its results file nbs/results/<name>.json via save_results (an executed copy of that run lands
## in runs/reproduce/), then re-execute it in its CI setting so that its tables show the new results. PARAMS="name=value
## ..." overrides an experiment's parameters cell for that run (its real setting), e.g. PARAMS="total_budget_s=1200".
FLAGS ?= slow
PARAMS ?=
reproduce: $(READY) $(SYSDEPS)
	@[ -n "$(NB)" ] || { echo "usage: make reproduce NB=nbs/demos/<notebook>.ipynb"; exit 1; }
	@for nb in $(NB); do [ -f "$$nb" ] || { echo "no notebook $$nb"; exit 1; }; done
	mkdir -p .cache && touch $(CURDIR)/.cache/reproduce-start
	$(PY) scripts/nbexec.py --jobs 1 --timeout 0 --flags "$(FLAGS)" --out runs/reproduce $(foreach p,$(PARAMS),-p '$(p)') $(NB)
	@for nb in $(NB); do r=nbs/results/$$(basename $$nb .ipynb).json; \
	  if [ "$$r" -nt $(CURDIR)/.cache/reproduce-start ]; then echo "rewrote $$r"; \
	  else echo "WARNING: $$nb wrote no results file $$r (does its slow setting end with save_results?)"; fi; done
	rm -f $(CURDIR)/.cache/reproduce-start
	$(PY) scripts/nbexec.py --jobs $(JOBS) $(NB)

## export: notebooks -> medseg_lab/ (then clean the notebooks' metadata)
export: $(READY)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

## readme: README.md from nbs/index.ipynb
readme: $(READY)
	$(BIN)/jupyter nbconvert --to markdown --no-input nbs/index.ipynb --output-dir . --output README
	@echo "README.md regenerated from nbs/index.ipynb"

## time-commands: time `make setup`, `make test` and `make run` on a fresh clone of HEAD (about an hour); writes
## nbs/results/index.json, from which the README's run-time table is rendered (then: make execute NB=nbs/index.ipynb readme)
time-commands: $(READY)
	$(PY) scripts/time_commands.py

## docs: the site in _docs/ (Sphinx + myst-nb + sphinx-book-theme): the committed, executed notebooks as they are (no
## execution here: `make execute` first), API pages from the docstrings, search; open _docs/index.html
docs: $(READY)
	$(PY) scripts/docs.py --out _docs --src _proc/docs

## lab: JupyterLab on the notebooks with the project kernel (LAB_ARGS="--ip=0.0.0.0 --no-browser" etc. pass through)
LAB_ARGS ?=
lab: $(READY) $(SYSDEPS)
	$(BIN)/jupyter lab --ServerApp.root_dir=nbs --MappingKernelManager.default_kernel_name=$(KERNEL) \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

clean:
	rm -rf _docs _proc .cache/test
