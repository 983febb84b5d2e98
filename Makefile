# Two commands on a fresh machine (Python 3.11, pip): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test bench clean-outputs wrapper-env

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) run_all.py --main

# oda-integral-wrapper (third-party client of MMODA, tested against the local MMODA) needs Python >= 3.13:
# a second virtualenv, .venv-wrapper/, built from the pins in tests/conformance/wrapper-constraints.txt
wrapper-env: $(STAMP)
	$(PY) tests/conformance/wrapper_env.py

test: $(STAMP) wrapper-env
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/run_all_benchmarks.py

clean-outputs:
	rm -rf outputs/*/
