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
KERNEL := medseg_lab
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

# make run knobs (papermill parameters of nbs/experiments/train_eval.ipynb)
MODEL ?= unet
PRESET ?= small
DATA ?= mni152_tissue
BUDGET ?= 210

.PHONY: all setup run test lab export docs readme check-export nbtest pytest clean

all: test

setup: $(READY)

$(PY):
	python3 -m venv $(VENV)

$(TORCH_STAMP): | $(PY)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	touch $@

$(READY): $(TORCH_STAMP) setup.py settings.ini
	$(PIP) install -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name $(KERNEL)
	touch $@

## run: train and evaluate the UNet baseline on the bundled real MRI sample; results land in runs/
run: $(READY)
	mkdir -p runs
	ts=$$(date -u +%Y%m%dT%H%M%SZ); \
	$(BIN)/papermill nbs/experiments/train_eval.ipynb runs/train_eval-$(MODEL)-$$ts.ipynb \
	  -k $(KERNEL) --cwd nbs/experiments --log-output --no-progress-bar \
	  -p model $(MODEL) -p preset $(PRESET) -p data $(DATA) -p time_budget_s $(BUDGET) \
	  -p out_dir $(CURDIR)/runs ; \
	echo "Executed notebook: runs/train_eval-$(MODEL)-$$ts.ipynb"

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

nbtest: $(READY)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing --skip_folder_re '^([_.]|experiments$$)'

pytest: $(READY)
	$(BIN)/pytest tests -q -p no:cacheprovider

## export: notebooks -> medseg_lab/ (then clean the notebooks' metadata)
export: $(READY)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

## readme: README.md from nbs/index.ipynb
readme: $(READY)
	$(BIN)/jupyter nbconvert --to markdown --no-input nbs/index.ipynb --output-dir . --output README
	@echo "README.md regenerated from nbs/index.ipynb"

## docs: the notebooks rendered to a static HTML site in _docs/ (Quarto cannot be installed offline)
docs: $(READY) readme
	mkdir -p _docs
	$(BIN)/jupyter nbconvert --to html --output-dir _docs nbs/*.ipynb nbs/*/*.ipynb
	@echo "Docs written to _docs/ (open _docs/index.html)"

## lab: JupyterLab on the notebooks with the project kernel
lab: $(READY)
	$(BIN)/jupyter lab --notebook-dir=nbs

clean:
	rm -rf _docs _proc
