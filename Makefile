# Two commands matter: `make demo` and `make test` (see README). Both bootstrap .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPED_PACKAGES := $(wildcard src/ikeguard/wire src/ikeguard/crypto src/ikeguard/engine src/ikeguard/policy src/ikeguard/pki src/ikeguard/audit src/ikeguard/dataplane src/ikeguard/tools src/ikeguard/control)

.PHONY: demo test lint unit bench sysdeps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

sysdeps:
	@scripts/ensure-system-packages.sh

demo: $(STAMP)
	$(BIN)/ikeguard demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict $(TYPED_PACKAGES)

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not interop"

test: $(STAMP) sysdeps lint
	$(BIN)/python -m pytest

bench: $(STAMP) sysdeps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
