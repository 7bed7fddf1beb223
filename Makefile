# Two commands to a running endpoint: `make run` and `make test`.
# Everything is installed into .venv/ and node_modules/ on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHECKOV := .venv-checkov/bin/checkov

.PHONY: run test install check unit integration clean

run: install ## Serve the endpoint over Azurite at http://127.0.0.1:$${PORT:-7071}/scim/v2
	$(BIN)/python -m tools.run

test: install $(CHECKOV) ## Lint, type-check and run the whole test suite (starts its own Azurite)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

unit: install ## Unit tests only (no I/O)
	$(BIN)/python -m pytest tests/unit

integration: install ## Integration tests only (Azurite, HTTP)
	$(BIN)/python -m pytest tests/integration

install: $(STAMP) node_modules/.package-lock.json

$(STAMP): requirements.txt requirements-dev.txt
	@echo "==> Creating $(VENV) and installing Python packages"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	@touch $(STAMP)

# checkov (the Bicep policy scan of tests/infra) pins its own dependencies: kept in its own venv.
$(CHECKOV):
	@echo "==> Installing checkov into .venv-checkov (Bicep policy scan)"
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet checkov==3.3.30

node_modules/.package-lock.json: package.json package-lock.json
	@echo "==> Installing Azurite from npm (package-lock.json)"
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean: ## Remove installed tools and local data
	rm -rf $(VENV) .venv-checkov node_modules .azurite .pytest_cache .mypy_cache .ruff_cache
