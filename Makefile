# Two commands matter: `make demo` and `make test` (see README). Both bootstrap .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPED_PACKAGES := $(wildcard src/ikeguard/wire src/ikeguard/crypto src/ikeguard/engine src/ikeguard/policy src/ikeguard/pki src/ikeguard/audit src/ikeguard/dataplane src/ikeguard/tools src/ikeguard/control src/ikeguard/service)

.PHONY: demo test test-future lint unit bench soak sysdeps clean reference dist fuzz

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

sysdeps:
	@scripts/ensure-system-packages.sh

# The demo needs only iproute2 and ping from the system (installed here when missing and run as root).
demo: $(STAMP)
	@command -v ip >/dev/null && command -v ping >/dev/null || test "$$(id -u)" -ne 0 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		iproute2 iputils-ping >/dev/null; }
	$(BIN)/ikeguard demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict $(TYPED_PACKAGES)
	$(BIN)/lint-imports --no-cache

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not interop"

test: $(STAMP) sysdeps lint
	$(BIN)/python -m pytest

# The in-process suite and the date_sensitive peer tests with the wall clock a year ahead for pytest and every
# process it starts (scripts/clock-ahead.sh, libfaketime): a certificate, CRL or seal with a fixed date fails here.
FUTURE_DAYS ?= 365
test-future: $(STAMP) sysdeps
	scripts/clock-ahead.sh $(FUTURE_DAYS) -- $(BIN)/python -m pytest -p no:cacheprovider \
		-m "not interop or date_sensitive" --deselect tests/test_clock_ahead.py

# Coverage-guided fuzzing (atheris) of the wire decoder and the engine's responder path, FUZZ_SECONDS per target;
# findings land in fuzz/regressions/<target>/ (replayed by tests/wire/test_fuzz_targets.py), new corpus in build/.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= wire responder
fuzz: $(STAMP)
	@for t in $(FUZZ_TARGETS); do mkdir -p build/fuzz/$$t fuzz/regressions/$$t && \
		$(BIN)/python fuzz/fuzz_$$t.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
		-artifact_prefix=fuzz/regressions/$$t/ build/fuzz/$$t fuzz/corpus/$$t || exit 1; done

bench: $(STAMP) sysdeps
	$(BIN)/python -m bench

# Issue 16 item 7: one tunnel against strongSwan soaked with lifetimes in seconds (rekeys from both sides,
# reauthentication, DPD, MOBIKE moves, a ping stream) for SOAK_SECONDS; samples in build/soak.json, the
# gateway's and charon's logs under build/soak/ (kept after a failure).
SOAK_SECONDS ?= 900
soak: $(STAMP) sysdeps
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_RESULT=build/soak.json $(BIN)/python -m pytest -p no:cacheprovider -s \
		--timeout=$$(( $(SOAK_SECONDS) + 300 )) --basetemp=build/soak tests/interop/test_soak.py

# docs/reference.md from the code (config model, command tree, profiles, audit events) and scripts/reference/;
# tests/test_reference_current.py fails when it is stale.
reference: $(STAMP)
	$(BIN)/python scripts/gen_reference.py

# A wheel and an sdist in dist/ (pip install dist/ikeguard-*.whl gives a working `ikeguard`).
dist: $(STAMP)
	rm -rf dist build
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
