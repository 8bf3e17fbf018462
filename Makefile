# Two commands from a fresh clone: `make dev` (the whole stack) and `make test` (lint + tests).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The Python SDK and taskctl: a distribution of their own, installed editable beside the server.
CLIENT := clients/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(CLIENT)/pyproject.toml | sha1sum | cut -c1-12)
MODELS := data/models
# The TypeScript SDK: its node_modules come from the committed lock file (`npm ci`), once per lock change.
TS := clients/typescript
TS_DEPS := $(TS)/node_modules/.package-lock.json

.PHONY: install system-deps models lint test test-heavy dev demo clean ts-deps ts-types

$(STAMP): pyproject.toml $(CLIENT)/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e $(CLIENT) -e '.[ml,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

$(TS_DEPS): $(TS)/package-lock.json
	npm ci --prefix $(TS) --no-audit --no-fund

ts-deps: $(TS_DEPS)

# Regenerate the SDK's types from the API's OpenAPI document (tests/test_typescript_sdk.py checks they match).
ts-types: install $(TS_DEPS)
	$(PY) scripts/openapi_document.py $(TS)/build/openapi.json
	npm run --prefix $(TS) generate

# espeak-ng is the embedded speech engine; ffmpeg comes from imageio-ffmpeg, so it is not needed here. Chromium
# is the browser of tests/test_temporal_ui.py.
system-deps:
	@command -v espeak-ng >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; \
		else echo "espeak-ng is missing: sudo apt-get install espeak-ng" >&2; exit 1; fi; }
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium (the Web UI test's browser) is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

# Tiny randomly initialised models (no downloads) used by `make dev` and the tests.
models: install
	$(PY) scripts/build_tiny_models.py --out $(MODELS)
	$(PY) scripts/build_tiny_tts.py --out $(MODELS)/tiny-vits

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: install system-deps $(TS_DEPS) lint
	$(PY) -m pytest

test-heavy: install system-deps $(TS_DEPS)
	$(PY) -m pytest -m heavy

dev: install system-deps models
	@scripts/dev.sh

# Against a running `make dev`: one task of each kind at CPU-safe sizes, then where each result file is.
demo:
	@$(PY) scripts/demo.py

# Refused while `make dev` runs; says what it deletes and what it keeps.
clean:
	@scripts/clean.sh
