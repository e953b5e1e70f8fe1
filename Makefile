# fetchtop: `make demo` opens the dashboard on the built-in demo; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test deps lint typecheck pytest screenshots bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fetchtop demo

lint: $(STAMP)
	$(BIN)/ruff check engine faultserver tui tests bench
	$(BIN)/ruff format --check engine faultserver tui tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

# Debian packages the real-server tests need, as "command:package". Installed when missing and run as
# root (CI and a fresh machine); otherwise the command to run is printed.
SYSTEM_DEPS := nginx:nginx-light prometheus:prometheus promtool:prometheus openssl:openssl

deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  command -v $${dep%%:*} >/dev/null 2>&1 || case " $$missing " in *" $${dep#*:} "*) ;; *) missing="$$missing $${dep#*:}";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "make test needs$$missing: run it as root, or sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

test: deps lint typecheck pytest

screenshots: $(STAMP)
	$(BIN)/python -m tui.screenshots screenshots

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Options in BENCH_ARGS, e.g. make bench BENCH_ARGS="--only tls-x1 --quick" (bench/README.md).
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
