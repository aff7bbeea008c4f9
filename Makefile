# Every target installs what it needs on a fresh machine (a local virtualenv in .venv).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install demo test test-slow bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -c "import torch, torchvision, lightning, diffusers, videogen; print('videogen installed; torch', torch.__version__)"
	rm -f $(VENV)/.installed-* && touch $@

demo: install
	$(VENV)/bin/videogen demo --out outputs/demo

test: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/videogen bench --out outputs/bench

lint: install
	$(VENV)/bin/ruff check videogen tests

clean:
	rm -rf outputs lightning_logs .pytest_cache
