# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-10)
# The CPU build of PyTorch runs the CUDA prover's code on the CPU in tests.
TORCH ?= torch==2.13.0
export GPUNET_DATABASE_URL ?= sqlite:///var/gpunet.db

.PHONY: run test lint venv clean bench browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[server,agent,dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/gpunet dev up --port 8000

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint browser
	GPUNET_TEST_POSTGRES_URL="$$(scripts/test-postgres.sh)" GPUNET_TEST_REDIS_URL="$$(scripts/test-redis.sh)" \
	  $(BIN)/pytest -n 2 -p no:cacheprovider

# The explorer's browser tests (tests/browser) drive Debian's chromium; as root, install it.
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "tests/browser need /usr/bin/chromium: apt-get install chromium"; exit 1; }

bench: $(STAMP)
	@echo "benchmarks live in bench/; see BENCHMARKS.md for the commands and figures"

# Stop the test servers this checkout started (their state is under var/) before removing it.
clean:
	-scripts/test-postgres.sh stop
	-scripts/test-redis.sh stop
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
