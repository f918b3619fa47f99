# `make run`: venv + `dvc repro` on the built-in offline configuration.
# `make test`: the test suite (what CI runs).
# `make bench`: the performance table of docs/performance.md (a few minutes).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install run harmful test test-fast bench dag clean

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

run: install
	dvc repro
	@cat metrics/summary.md

# the harmful-task study: configs/harmful.yaml run as the DVC experiment `harmful`
harmful: install
	python -m alphavil.study configs/harmful.yaml

test: install
	python -m pytest -q

test-fast: install
	python -m pytest -q -m "not integration"

bench: install
	python -m benchmarks.run

dag: install
	dvc dag
