# Local dev/test infrastructure (Kafka + PostgreSQL, no Docker).
# Included from the root Makefile: `include infra/infra.mk`.
PY ?= .venv/bin/python

.PHONY: infra-up infra-down infra-status infra-purge

infra-up: ## start Kafka + PostgreSQL, create topics, write infra/local.env
	PY=$(PY) bash infra/up.sh

infra-down: ## stop Kafka + PostgreSQL (data kept)
	bash infra/down.sh

infra-status: ## show whether Kafka / PostgreSQL are up (fails if not)
	bash infra/status.sh

infra-purge: ## stop everything and delete infra/.state (all local data)
	bash infra/down.sh --purge
