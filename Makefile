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

.PHONY: install browser proxy run models triton bench test test-slow test-unit test-integration lint format images clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[export,dev]"
	touch $@

install: $(INSTALLED)

models: install
	$(BIN)/tritongate export all --repository $(MODEL_REPOSITORY) --skip-existing \
		--yolos-weights $(YOLOS_WEIGHTS) --offline-fallback-random-init

# The local demo opens the inference endpoints (no login needed); a deployment keeps the default,
# TRITONGATE_INFERENCE_AUTH=required. Override with `TRITONGATE_INFERENCE_AUTH=required make run`.
run: models
	TRITONGATE_INFERENCE_AUTH=$${TRITONGATE_INFERENCE_AUTH:-open} \
		$(BIN)/tritongate serve --repository $(MODEL_REPOSITORY)

triton: install
	$(BIN)/tritongate triton --repository $(MODEL_REPOSITORY)

# Benchmarks (benchmarks/README.md): every scenario by default; e.g. BENCH_ARGS="-s text".
# The report goes to benchmarks/results/<date>-<machine>-<commit>/.
bench: models
	$(BIN)/tritongate bench --repository $(MODEL_REPOSITORY) $(BENCH_ARGS)

# The end-to-end tests drive Debian's Chromium (never a downloaded browser); install it when it
# is missing and this is root with apt-get, else those tests are skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	  else echo "Chromium is not installed (no root apt-get): the browser tests will be skipped"; fi; }

# The reverse-proxy tests run the deployment's nginx config through Debian's nginx; install it
# when it is missing and this is root with apt-get, else those tests are skipped with the reason.
proxy:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q nginx-light >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null; }; \
	  else echo "nginx is not installed (no root apt-get): the proxy tests will be skipped"; fi; }

# The default suite leaves out the tests marked slow (overload, soak, schemathesis: minutes
# each); `make test-slow` runs them, and CI (.ci/run) runs both.
test: install browser proxy
	$(BIN)/python -m pytest -m "not slow"

test-slow: install browser proxy
	$(BIN)/python -m pytest -m slow -rP  # -rP: their figures (what they print) in the log

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if [ -x $(BIN)/hadolint ]; then $(BIN)/hadolint Dockerfile.gpu; fi

# The deployment images (README "Deploying"): Triton, the API and the export job, one Dockerfile.
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
images:
	for target in triton api export; do \
	  docker build -f Dockerfile.gpu --target $$target -t tritongate-$$target:$(IMAGE_TAG) . || exit 1; \
	done

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .tritongate .pytest_cache .ruff_cache
