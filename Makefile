# BonyChat conversation events. Two commands set everything up on a fresh machine:
#   make run    - the main job on the embedded default (SQLite, no servers)
#   make test   - installs what it needs, starts Kafka + PostgreSQL, runs every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEMO_DIR := examples/out
DEMO_DB := $(DEMO_DIR)/demo.db
DEMO_EVENTS := $(DEMO_DIR)/sample.jsonl

.PHONY: help install deps-test run test test-unit test-integration test-fuzz test-faults mutation lint schemas bench bench-quick clean \
	screenshots bench-pages bench-live

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# Two stamps: the runtime install (what `make run` needs: the package and its
# dependencies) and the dev install (plus pytest, ruff, mypy...: tests and lint).
$(RUNTIME_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e .
	$(PY) -m compileall -q services schemas >/dev/null  # bytecode: each start no longer compiles them
	@touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m compileall -q services schemas >/dev/null  # bytecode: each start no longer compiles them
	@touch $(RUNTIME_STAMP) $(STAMP)

install: $(STAMP) ## create .venv and install the package with its dev tools

deps-test: ## Debian packages the tests need (kcat ...), installed when missing: infra/deps.sh
	@bash infra/deps.sh

run: $(RUNTIME_STAMP) ## import a realistic sample on the embedded store and print metrics (no dev tools)
	@mkdir -p $(DEMO_DIR)
	@rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	@echo "== generating a sample: 60,000 gateway events, 6,000 contacts, 3 workspaces"
	$(PY) -m bench.generate --events 60000 --contacts 6000 --workspaces 3 -o $(DEMO_EVENTS)
	@echo "== bonychat import (validate, dedupe, lifecycle, projections)"
	$(BIN)/bonychat import $(DEMO_EVENTS) --database-url $(DEMO_DB)
	@echo; echo "== conversations opened/closed and resolution time per day (ws1, Europe/Berlin)"
	$(BIN)/bonychat metrics --workspace ws1 --group-by day --tz Europe/Berlin \
	    --from 2026-10-01 --to 2026-10-31 --database-url $(DEMO_DB)
	@echo; echo "== per agent (assignee at close), whole range"
	$(BIN)/bonychat metrics --workspace ws1 --group-by assignee --database-url $(DEMO_DB)
	@echo; echo "== per channel"
	$(BIN)/bonychat metrics --workspace ws1 --group-by channel --database-url $(DEMO_DB)
	@echo; echo "Try: $(BIN)/bonychat conversations --workspace ws1 --status open --database-url $(DEMO_DB)"

test: $(STAMP) deps-test lint infra-up ## lint, start Kafka + PostgreSQL, run unit, e2e and integration tests
	set -a; source infra/local.env; set +a; BONYCHAT_TESTS_NO_SKIP=1 $(BIN)/pytest tests -p no:cacheprovider

test-unit: $(STAMP) deps-test ## unit and end-to-end tests of the embedded runtime only (no servers)
	$(BIN)/pytest tests/unit tests/e2e

FUZZ_EXAMPLES ?= 100000
test-fuzz: $(STAMP) ## 100,000 fuzzed envelopes, 300 schemathesis examples per API operation
	BONYCHAT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) BONYCHAT_OPENAPI_EXAMPLES=300 \
	    $(BIN)/pytest tests/unit/test_envelope_fuzz.py tests/e2e/test_openapi_fuzz.py -p no:cacheprovider

MUTANTS ?=
mutation: $(STAMP) ## mutation testing of the core (mutmut, CPU heavy, not in make test): MUTANTS='services.ingest.domain.normalise*' narrows it
	rm -rf mutants
	BONYCHAT_FUZZ_EXAMPLES=80 BONYCHAT_ISOLATION_EXAMPLES=20 nice $(BIN)/mutmut run $(MUTANTS) || true
	$(BIN)/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json && echo
	$(BIN)/mutmut results

bench-pages: $(STAMP) infra-up ## page-data latency of the Reports/Dashboard endpoints at 1M conversations (PostgreSQL)
	set -a; source infra/local.env; set +a; $(PY) -m bench.pages --conversations 1000000 --requests 3

bench-live: $(STAMP) infra-up ## live Dashboard latency (posted -> shown) on both runtimes while 1,000 events/s are posted
	set -a; source infra/local.env; set +a; $(PY) -m bench.live --runtime both --rate 1000 --seconds 45

screenshots: $(STAMP) deps-test ## redraw docs/screenshots (both pages, 1280 px and 390 px)
	$(PY) -m tests.e2e.pages_harness --screenshots docs/screenshots

test-faults: $(STAMP) deps-test ## fault injection under load (kills, broker and PostgreSQL faults), ~30 min
	$(PY) -m tests.faults.run --plan full

lint: $(STAMP) ## ruff, mypy (strict on services/ and schemas/), import contracts, schema files current
	$(BIN)/ruff check services schemas tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(PY) -m schemas.generate --check

schemas: $(STAMP) ## regenerate schemas/json from the pydantic models
	$(PY) -m schemas.generate

bench: $(STAMP) infra-up ## full benchmarks (1M events); JSON in bench/results/
	set -a; source infra/local.env; set +a; $(PY) -m bench.run --full

bench-quick: $(STAMP) infra-up ## the same measurements on small inputs (< 60 s), then 8 s of bench-live
	set -a; source infra/local.env; set +a; $(PY) -m bench.run --quick
	set -a; source infra/local.env; set +a; $(PY) -m bench.live --runtime both --rate 1000 \
	    --seconds 8 --out bench/results/live-quick.json

clean: ## remove the virtualenv, caches and demo output (not infra state)
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info

include infra/infra.mk
