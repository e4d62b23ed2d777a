# The two set-up commands of the README: `make app` and `make test`. Both work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install setup app test lint

$(PY):
	python3 -m venv $(VENV)

# torch first and pinned: the CPU wheel is on local disk; letting a dependency pull torch fetches a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,distributed]"
	touch $(STAMP)

install: $(STAMP)

# Embedded data (seconds) and models (shipped; trained only if missing) under $HIPP_CACHE.
setup: install
	$(BIN)/hipp data build
	$(BIN)/hipp zoo build

app: setup
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.headless true --browser.gatherUsageStats false

# Two workers (the CI machine's two cores), each test file on one worker so its module fixtures are built once.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
