# clawmesh — the two commands a user needs are `make run` and `make test`; both install what is
# missing first (apt packages, the .venv, images), so each works alone on a fresh Debian machine.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS  ?=

.PHONY: install run test test-fast bench chaos lint oracle-fixtures images images-test compose-up compose-down clean help openclaw-catalogue openclaw-configs

help:
	@echo "make run          install if needed, then start the embedded gateway (clawmesh up --demo)"
	@echo "make test         install if needed (apt, venv, docker engine, images), then run every test"
	@echo "make test-fast    unit tests only"
	@echo "make bench        benchmarks with in-run baselines (tests/bench)"
	@echo "make oracle-fixtures  rerun the real OpenClaw (npm, ~/.cache/openclaw-oracle) to regenerate tests/fixtures/oracle/"
	@echo "make chaos        minutes of random faults under load on a loopback cluster (ARGS=\"--seed N --duration S\")"
	@echo "make lint         ruff, import layering (scripts/check_imports.py), mypy --strict on every package"
	@echo "make images       build clawmesh-nats, clawmesh-python, clawmesh (services) and clawmesh-sandbox images locally"
	@echo "make compose-up   images + credentials + docker compose up -d (scripts/compose.sh)"
	@echo "make openclaw-catalogue / openclaw-configs   regenerate the fixtures read from the real OpenClaw"

$(STAMP): pyproject.toml scripts/bootstrap.sh
	@scripts/bootstrap.sh
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/clawmesh up --demo $(ARGS)

test: install
	@scripts/test.sh $(ARGS)

test-fast: install
	$(BIN)/pytest -q tests/unit $(ARGS)

bench: install
	@scripts/bench.sh $(ARGS)

# Needs OpenClaw 2026.9.6 + Node 24 from npm (docs/openclaw-oracle.md); refuses clearly without them.
oracle-fixtures: install
	$(BIN)/python scripts/oracle/session_keys.py
	$(BIN)/python scripts/oracle/exec_allowlist.py
	$(BIN)/python scripts/oracle/channel_access.py
	$(BIN)/python scripts/oracle/openclawx_stream.py
	$(BIN)/python scripts/oracle/a2a_proxy.py
	$(BIN)/python scripts/oracle/config_writes.py
	$(BIN)/python scripts/oracle/openclaw_state.py
	$(BIN)/python scripts/oracle/session_export.py
	$(BIN)/python scripts/oracle/http_hooks.py
	$(BIN)/python scripts/oracle/chat_approvals.py
	$(BIN)/python scripts/oracle/media_note.py

# docs/testing.md: 3 clustered nats-servers + the services as processes, seeded faults, then a
# check of what users received. CHAOS_SEED / CHAOS_DURATION / CHAOS_SESSIONS or ARGS set the run.
chaos: install
	$(BIN)/python -m tests.chaos $(ARGS)

lint: install
	$(BIN)/ruff check libs services gateway scripts tests
	$(BIN)/ruff format --check libs services gateway scripts tests
	$(BIN)/python scripts/check_imports.py
	@scripts/typecheck.sh

images: install
	@scripts/images.sh all

images-test: install
	@scripts/images.sh test

compose-up: images
	@scripts/compose.sh up -d

compose-down:
	@scripts/compose.sh down -v

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache

# Fixtures generated from the real OpenClaw (docs/openclaw-oracle.md).
openclaw-catalogue: install
	$(BIN)/python scripts/oracle/key_catalogue.py

openclaw-configs: install
	$(BIN)/python scripts/oracle/doc_configs.py
