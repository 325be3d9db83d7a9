# taskflows: `make up` runs everything on this machine, `make test` runs the tests.
# Every target first bootstraps uv into .tools/ and the project into .venv/ (needs python3
# >= 3.11 and network access to PyPI the first time).

SHELL := /bin/bash
.DEFAULT_GOAL := up

UV_VERSION := 0.13.9
UV := .tools/uv-pkg/bin/uv
VENV := .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=
# mypy refuses a directory without Python files (bench/ before it is written).
LINT_DIRS := $(foreach dir,flows api deployments worker stack cli sql tests bench,$(if $(wildcard $(dir)/*.py),$(dir)))

# Never download a Python: use the machine's. No telemetry from Prefect or anything else.
export UV_PYTHON_DOWNLOADS := never
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: up test lint bench clean bootstrap browser

bootstrap:
	@if [ ! -x $(UV) ]; then \
		echo "bootstrap: installing uv $(UV_VERSION) into .tools/uv-pkg"; \
		PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
			python3 -m pip install --quiet --target .tools/uv-pkg uv==$(UV_VERSION); \
	fi
	@if [ -f uv.lock ]; then $(UV) sync --frozen --quiet; else $(UV) sync --quiet; fi

up: bootstrap
	$(PYTHON) -m stack.up

# The browser tests drive Debian's chromium; without it they are skipped, not failed.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "test: installing chromium for the browser tests"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
				|| echo "warning: could not install chromium; the browser tests will be skipped" >&2; \
		else \
			echo "warning: chromium is missing (install it as root with apt-get); the browser tests will be skipped" >&2; \
		fi; \
	fi

test: bootstrap browser
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/mypy $(LINT_DIRS)

# The API figures need wrk (Debian's package); install it like chromium when we can.
bench: bootstrap
	@if ! command -v wrk >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
			|| echo "warning: could not install wrk; the API figures will show n/a" >&2; \
	fi
	$(PYTHON) -m bench $(BENCH_ARGS)

# Caches and logs only: .data/pg (your database), .venv and .tools stay.
clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .data/logs
	find . -path ./.venv -prune -o -path ./.tools -prune -o -name __pycache__ -type d -exec rm -rf {} +
