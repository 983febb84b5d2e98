# Two commands on a fresh machine (Python 3.11, pip): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run lint test test-newest bench lab clean-outputs wrapper-env

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[test,lab]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# JupyterLab on the notebooks (kernel "Python 3" of .venv)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

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

bench: $(STAMP)
	$(PY) bench/run_all_benchmarks.py

clean-outputs:
	rm -rf outputs/*/
