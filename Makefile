# Every target installs what it needs on a fresh machine (a local virtualenv in .venv).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
LOCK   ?= requirements.lock
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install lock demo test test-slow bench bench-gpu lint clean

install: $(STAMP)

# Installs the exact versions the test suite passed with ($(LOCK)); pyproject.toml keeps ranges for
# library users.  `make lock` re-resolves the ranges in a scratch venv and rewrites the lock.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev]"
	$(PY) -c "import torch, torchvision, lightning, diffusers, videogen; print('videogen installed; torch', torch.__version__)"
	rm -f $(VENV)/.installed-* && touch $@

lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e ".[dev]"
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' > $(LOCK)
	rm -rf .venv-lock
	@echo "wrote $(LOCK); run 'make test' in a fresh clone before committing it"

demo: install
	$(VENV)/bin/videogen demo --model all --out outputs/demo

test: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/videogen bench --out outputs/bench

# GPU throughput and sampling time of the paper-size denoisers (docs/bench_gpu.md); without a CUDA GPU
# it says so and exits 0, leaving the report as it was.
bench-gpu: install
	$(VENV)/bin/videogen bench --only gpu_throughput,gpu_sampling --out outputs/bench-gpu --docs docs/bench_gpu.md

lint: install
	$(VENV)/bin/ruff check videogen tests

clean:
	rm -rf outputs lightning_logs .pytest_cache
