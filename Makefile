# Two commands from a fresh clone: `make dev` (the whole stack) and `make test` (lint + tests).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
MODELS := data/models

.PHONY: install system-deps models lint test test-heavy dev clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[ml,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# espeak-ng is the embedded speech engine; ffmpeg comes from imageio-ffmpeg, so it is not needed here.
system-deps:
	@command -v espeak-ng >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; \
		else echo "espeak-ng is missing: sudo apt-get install espeak-ng" >&2; exit 1; fi; }

# Tiny randomly initialised models (no downloads) used by `make dev` and the tests.
models: install
	$(PY) scripts/build_tiny_models.py --out $(MODELS)
	$(PY) scripts/build_tiny_tts.py --out $(MODELS)/tiny-vits

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: install system-deps lint
	$(PY) -m pytest

test-heavy: install system-deps
	$(PY) -m pytest -m heavy

dev: install system-deps models
	@scripts/dev.sh

clean:
	rm -rf data/temporal-dev.db* data/media
