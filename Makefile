# The README's two commands. Each sets itself up from nothing: it creates .venv when missing
# and installs cvkit (with the dev, weights and export extras) and the first-party plugins into
# it. The install is skipped while pyproject.toml and the plugins' pyproject files are unchanged.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cvkit-installed
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)
PYTEST_ARGS ?=

.PHONY: demo test lint format clean

demo: $(STAMP)
	$(BIN)/cvkit demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(STAMP): pyproject.toml $(PLUGIN_PROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,weights,export]" $(foreach p,$(PLUGIN_PROJECTS),-e $(dir $(p)))
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
