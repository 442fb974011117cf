# retention_lab: the front door. `make help` lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/demo.yaml
KERNEL := retention-lab
TRACKING_URI := sqlite:///$(CURDIR)/mlruns/mlflow.db
PYTEST_ARGS ?=
# uv installs exactly the versions in uv.lock (`--frozen`: no resolution); pinned so that every
# machine reads and writes the lock file alike. `make lock` is the one way to change the lock.
UV_VERSION := 0.13.9
UV_LOCK_ARGS ?=
# --compile-bytecode: every process (CLI, stage kernel, test worker) then reads compiled modules
# instead of compiling its imports from source, which it does each time where
# PYTHONDONTWRITEBYTECODE is set (about 3.5 s of each stage kernel's start on two cores)
SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --quiet --compile-bytecode --python $(BIN)/python
# the project's own modules (installed editable): compiled beside the source, refreshed on install
COMPILE_SRC := $(BIN)/python -m compileall -q src

# the shared tracking server (make tracking-server): PostgreSQL connection from libpq's variables,
# the password only from PGPASSWORD or the file PGPASSFILE names, never on a command line
PGHOST ?= 127.0.0.1
PGPORT ?= 5432
PGUSER ?= mlflow
PGDATABASE ?= mlflow
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
ARTIFACT_ROOT ?= $(CURDIR)/mlruns/server-artifacts

# apt-get install Debian packages, as root or through sudo
define apt_install
if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; fi
endef

.DEFAULT_GOAL := help
.PHONY: help install install-test install-docs lock browser java postgres run test docs lab ui tracking-server lint clean-venv

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv==$(UV_VERSION)

$(VENV)/.installed: $(BIN)/python pyproject.toml uv.lock
	$(SYNC) --extra examples
	$(COMPILE_SRC)
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (retention-lab)"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(SYNC) --extra examples --extra test
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(SYNC) --extra examples --extra docs
	touch $@

install: $(VENV)/.installed ## Create .venv and install the package and its Jupyter kernel

install-test: $(VENV)/.installed-test ## Install the test extras too

install-docs: $(VENV)/.installed-docs ## Install the documentation tools too

lock: install ## Re-resolve uv.lock after a change to pyproject.toml, pin environment.yml to it
	$(BIN)/uv lock $(UV_LOCK_ARGS)
	$(BIN)/python -m retention_lab.lockfile environment.yml

browser: ## Install headless Chromium (Debian package) for the browser tests
	@command -v chromium >/dev/null 2>&1 || { $(call apt_install,chromium); }

java: ## Install Java 17 (Debian openjdk-17-jre-headless) for Spark
	@java -version 2>&1 | grep -q 'version "\(1[7-9]\|2[0-9]\)' || { $(call apt_install,openjdk-17-jre-headless); }

postgres: ## Install PostgreSQL (Debian postgresql) for the tracking server and its tests
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { $(call apt_install,postgresql); }

run: install ## Run the demo pipeline (CONFIG=...) and print the path of reports/index.html
	$(BIN)/retention-lab run --config $(CONFIG)

test: install-test browser java postgres ## Run the whole test suite
	$(COMPILE_SRC)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

docs: install-docs ## Build the documentation site into site/ (warnings are errors)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "documentation: $(CURDIR)/site/index.html"

lab: install ## Start JupyterLab with the project's kernel (as root too, as in containers)
	$(BIN)/jupyter lab --notebook-dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

ui: install ## Start the MLflow UI on this project's store, bound to 127.0.0.1
	mkdir -p mlruns/artifacts
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (the model-training view: runs tables)"
	$(BIN)/mlflow ui --backend-store-uri $(TRACKING_URI) --default-artifact-root $(CURDIR)/mlruns/artifacts --host 127.0.0.1 --port 5000

tracking-server: install ## MLflow server on PostgreSQL (PGHOST, PGPORT, PGUSER, PGDATABASE; password: PGPASSWORD or PGPASSFILE)
	mkdir -p $(ARTIFACT_ROOT)
	$(BIN)/mlflow server --backend-store-uri "postgresql+psycopg2://$(PGUSER)@$(PGHOST):$(PGPORT)/$(PGDATABASE)" \
	  --artifacts-destination $(ARTIFACT_ROOT) --serve-artifacts \
	  --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) --workers 1

lint: install-test ## Check style (ruff, notebooks included)
	$(BIN)/ruff check src tests benchmarks notebooks docs/hooks.py

clean-venv: ## Remove the virtual environment
	rm -rf $(VENV)
