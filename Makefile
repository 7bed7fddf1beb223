# Two commands to a running endpoint: `make run` and `make test`.
# Everything is installed into .venv/ and node_modules/ on first use.

# Python 3.13, as in production (Dockerfile, Bicep): the first of these that is a 3.13, or
# PYTHON=/path/to/python3.13 on the command line.
PYTHON_CANDIDATES := python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) \
                     /usr/local/bin/python3.13 /usr/bin/python3.13 python3
PYTHON ?= $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell $(p) -c 'import sys; print(sys.version_info[:2] == (3, 13))' 2>/dev/null | grep -q True && echo $(p))))
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-3.13
SCIM   := $(BIN)/scim
CHECKOV := .venv-checkov/bin/checkov

.PHONY: run test install check unit integration clean python

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

install: $(SCIM) node_modules/.package-lock.json

check: install ## Scan the endpoint's table for anomalies: scim check (SCIM_STORAGE_* as for the endpoint; ARGS=--repair)
	$(SCIM) check $(ARGS)

python: ## Print the Python 3.13 the venv is built with
	@if [ -n "$(PYTHON)" ]; then echo "$(PYTHON) ($$($(PYTHON) --version))"; else echo "Python 3.13 not found"; exit 2; fi

$(STAMP): requirements.txt requirements-dev.txt
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: Python 3.13 was not found (tried: $(PYTHON_CANDIDATES))." >&2; \
	  echo "Install it (e.g. 'pyenv install 3.13', 'uv python install 3.13', or your distribution's" >&2; \
	  echo "python3.13 package), or name it: make PYTHON=/path/to/python3.13 ..." >&2; \
	  exit 2; \
	fi
	@echo "==> Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version)) and installing Python packages"
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	@touch $(STAMP)

# The `scim` command (pyproject.toml [project.scripts]): this project alone, editable, on top of the
# hash-locked packages above (--no-deps: nothing unlocked; --no-build-isolation: the locked setuptools).
# Setuptools' notice "Editable installation ... folders with the same name as your package" is silenced:
# that folder is the package.
$(SCIM): $(STAMP) pyproject.toml
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(SCIM)

# checkov (the Bicep policy scan of tests/infra) pins its own dependencies: kept in its own venv.
$(CHECKOV): $(STAMP)
	@echo "==> Installing checkov into .venv-checkov (Bicep policy scan)"
	$(PYTHON) -m venv --clear .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet checkov==3.3.30

node_modules/.package-lock.json: package.json package-lock.json
	@echo "==> Installing Azurite from npm (package-lock.json)"
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean: ## Remove installed tools and local data
	rm -rf $(VENV) .venv-checkov node_modules .azurite .pytest_cache .mypy_cache .ruff_cache
