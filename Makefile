# Two commands for a fresh machine (see README): `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DEV := PLATFORM_PROFILE=dev
PO_FILES := $(shell find locale platform compliance inference -name '*.po' -path '*LC_MESSAGES*' 2>/dev/null)
MO_FILES := $(PO_FILES:.po=.mo)
HOST ?= 127.0.0.1
PORT ?= 8000
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-sqlite lint setup setup-dev messages demo-passwords clean

run: setup messages
	$(DEV) $(PY) manage.py migrate --noinput
	$(DEV) $(PY) manage.py make_demo_model --if-missing
	@# Last before serving, so the generated demo passwords are the last thing on the screen.
	$(DEV) $(PY) manage.py seed_demo
	@echo "Serving on http://$(HOST):$(PORT)/  (Ctrl-C to stop)"
	$(DEV) $(PY) manage.py runserver --noreload $(HOST):$(PORT)

test: setup-dev messages
	$(VENV)/bin/ruff check .
	$(PY) scripts/dependency_audit.py
	$(PY) scripts/testenv.py -- $(PY) -m pytest $(PYTEST_ARGS)

# The quick local loop: SQLite instead of PostgreSQL (Redis is still started).
test-sqlite: setup-dev messages
	$(PY) scripts/testenv.py --db sqlite -- $(PY) -m pytest $(PYTEST_ARGS)

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

setup: $(VENV)/.runtime-installed
setup-dev: $(VENV)/.dev-installed
messages: $(MO_FILES)

demo-passwords: setup
	$(DEV) $(PY) manage.py seed_demo --reset-passwords

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-installed: requirements.txt requirements-nodeps.txt | $(PY)
	scripts/system-packages run
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	scripts/system-packages test
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

%.mo: %.po
	msgfmt --check -o $@ $<

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
