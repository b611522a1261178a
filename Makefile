# usm: `make demo` runs the main job on its embedded defaults, `make test` passes the tests,
# `make venv` only sets up. Everything installs from the project's own files.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: venv
	$(BIN)/usm simulate sock-shop --policy policies --out out/sock-shop

test: venv
	$(BIN)/usm policy test policies/tests/*.yaml --junit $(VENV)/policy-tests.xml
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check usm tests bench

bench: venv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev,bench]'
	$(BIN)/python bench/engine_cycle.py
	$(BIN)/python bench/simulate.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
