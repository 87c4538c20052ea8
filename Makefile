# TritonGate: `make run` serves, `make test` tests. Both set everything up from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MODEL_REPOSITORY ?= model_repository

# Offline data from the shared folder when it exists beside the checkout (CI and dev sessions);
# a user's machine without it downloads the 20 Newsgroups archive instead.
SHARED_DATA ?= $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/20news/20news-bydate.tar.gz),)
export TRITONGATE_NEWSGROUPS_ARCHIVE ?= $(SHARED_DATA)/20news/20news-bydate.tar.gz
endif
ifneq ($(wildcard $(SHARED_DATA)/images),)
export TRITONGATE_IMAGES_DIR ?= $(SHARED_DATA)/images
endif
# Where YOLOS weights come from: a hub id, a local directory, or `random-init`.
# Without hub access, `make run` falls back to random weights and says so (see README).
YOLOS_WEIGHTS ?= hustvl/yolos-tiny

.PHONY: install run models triton test test-unit test-integration lint format clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[export,dev]"
	touch $@

install: $(INSTALLED)

models: install
	$(BIN)/tritongate export all --repository $(MODEL_REPOSITORY) --skip-existing \
		--yolos-weights $(YOLOS_WEIGHTS) --offline-fallback-random-init

run: models
	$(BIN)/tritongate serve --repository $(MODEL_REPOSITORY)

triton: install
	$(BIN)/tritongate triton --repository $(MODEL_REPOSITORY)

test: install
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .tritongate .pytest_cache .ruff_cache
