# The two commands the README leads with: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-containers lint typecheck pytest install tools demo run devnet migrate superuser requirements bench clean

# A venv with the pinned dev requirements and the project itself; redone when a pin changes.
$(STAMP): requirements/dev.txt requirements/base.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch node_modules/.installed

install: $(STAMP) node_modules/.installed

# promtool and prometheus for tests/deploy (the alert rules' checks and a live scrape), and
# chromium for tests/e2e (the web frontend's flow in a browser): Debian's packages, installed
# once when missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && [ -x /usr/bin/chromium ] || { \
	  command -v apt-get >/dev/null || { echo "install Prometheus (promtool, prometheus) and Chromium (/usr/bin/chromium) for the tests"; exit 1; }; \
	  echo "installing Debian's prometheus and chromium packages for tests/deploy and tests/e2e …"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy .

# The suite on PYTEST_WORKERS processes (pytest-xdist: a test database and an anvil per worker;
# most tests wait on PostgreSQL, anvil and HTTP, not on a core), then the tests that must run
# alone. PYTEST_ARGS picks tests by path or -k; PYTEST_MARK by marker (pytest keeps only the last
# -m, which would pull the exclusive tests into the parallel run). Exit code 5 is "nothing
# selected", when a phase has no test the selection picks.
PYTEST_WORKERS ?= 4
PYTEST_MARK ?=
MARK_AND = $(if $(PYTEST_MARK), and ($(PYTEST_MARK)))
pytest: install tools
	@case " $(PYTEST_ARGS) " in *" -m "*|*" -m"*) echo "PYTEST_ARGS must not hold -m: use PYTEST_MARK='…'"; exit 2;; esac
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) -m "not exclusive$(MARK_AND)" --durations=15 $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(VENV)/bin/pytest -m "exclusive$(MARK_AND)" $(PYTEST_ARGS) || [ $$? -eq 5 ]

test: lint typecheck pytest

# The container deployment for real (Dockerfile, docker-compose.yml's devnet profile, three
# qcluster containers): mints TOKENS, waits for every reveal, audits, tears down. Starts dockerd
# (and installs Debian's docker.io) when no engine runs; see glisk/devtools/containers.py.
TOKENS ?= 300
test-containers: install
	$(PY) -m glisk.devtools.containers --tokens $(TOKENS)

# The whole pipeline offline: DEMO_TOKENS=100 by default; KEEP_RUNNING=1 leaves it up for the admin.
demo: install
	$(PY) manage.py demo

# The stack without simulated minting, on the configuration in .env (real services or the devnet).
run: install
	$(PY) manage.py serve

# The local chain alone (anvil with GliskNFT, the X and name-registry stand-ins) until Ctrl-C.
devnet: install
	$(PY) manage.py devnet

# Every benchmark once, at sizes that finish in about ten minutes here; each prints its figures
# and writes JSON to bench/results/ (docs/performance.md gives the figures).
bench: install
	$(PY) bench/gas.py
	$(PY) bench/anvil_blocks.py
	$(PY) bench/ingest.py
	$(PY) bench/recover.py --tokens 1000 --runs 1
	$(PY) bench/pipeline.py throughput --tokens 1000 --clusters 1 --runs 1
	$(PY) bench/pipeline.py latency
	$(PY) bench/realistic.py
	$(PY) bench/read_api.py --seconds 20

migrate: install
	$(PY) manage.py migrate --no-input

superuser: migrate
	$(PY) manage.py createsuperuser

requirements:
	$(VENV)/bin/pip-compile --quiet --strip-extras --output-file requirements/base.txt requirements/base.in
	$(VENV)/bin/pip-compile --quiet --strip-extras --output-file requirements/dev.txt requirements/dev.in

clean:
	rm -rf $(VENV) node_modules var
