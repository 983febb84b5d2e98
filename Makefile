# Two commands on a fresh machine (Python 3.11, pip): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run lint test test-newest print-newest-python bench lab clean-outputs wrapper-env js9

# JS9 (MIT), the gallery's FITS viewer: from the npm registry, pinned with its integrity hash by
# lib/mmoda_local/gallery_assets/js9/package-lock.json, installed by `npm ci` into its node_modules/ (not in git).
# An order-only prerequisite of the virtualenv, so that `make setup`, `make test` and CI install it without a new
# JS9 rebuilding the virtualenv.
JS9_DIR := lib/mmoda_local/gallery_assets/js9
JS9_STAMP := $(JS9_DIR)/node_modules/.installed

$(JS9_STAMP): $(JS9_DIR)/package.json $(JS9_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed to install JS9, the gallery's FITS viewer"; exit 1; }
	cd $(JS9_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	touch $(JS9_STAMP)

js9: $(JS9_STAMP)

$(STAMP): pyproject.toml constraints.txt | $(JS9_STAMP)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[test,lab]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# JupyterLab on the notebooks (kernel "Python 3" of .venv)
# (as root, e.g. in a container, JupyterLab refuses to start without --allow-root); LAB_ARGS: more options
LAB_ARGS ?=
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) notebooks/

run: $(STAMP)
	$(PY) run_all.py --main

# oda-integral-wrapper (third-party client of MMODA, tested against the local MMODA) needs Python >= 3.13:
# a second virtualenv, .venv-wrapper/, built from the pins in tests/conformance/wrapper-constraints.txt
wrapper-env: $(STAMP)
	$(PY) tests/conformance/wrapper_env.py

# ruff, configured in pyproject.toml: lint (notebooks included) and formatting; `make test` runs it first
lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests bench run_all.py notebooks
	$(VENV)/bin/ruff format --check lib tests bench run_all.py

test: $(STAMP) lint wrapper-env
	$(PY) -m pytest

# The same suite on the newest Python of the machine (3.13 here, found as for the wrapper's environment), in its
# own virtualenv .venv-newest/: CI runs `make test` on Python 3.11, then this.
NEWEST_PYTHON ?= $(shell $(PYTHON) tests/conformance/wrapper_env.py --find 2>&1 | tail -1 | cut -d' ' -f1)
test-newest:
	$(MAKE) test VENV=.venv-newest PYTHON=$(NEWEST_PYTHON)

print-newest-python:
	@echo $(NEWEST_PYTHON)

bench: $(STAMP)
	$(PY) bench/run_all_benchmarks.py

clean-outputs:
	rm -rf outputs/*/
