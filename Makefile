# The README's two commands. Each sets itself up from nothing: it creates .venv when missing
# and installs cvkit (with the dev, weights and export extras) and the first-party plugins into
# it. The install is skipped while pyproject.toml and the plugins' pyproject files are unchanged.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cvkit-installed
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)
PYTEST_ARGS ?=
# test files spread over this many processes (pytest-xdist; a file's tests stay together, so
# its fixtures are built once). On this project's 2-core machine the suite (1,073 tests) took
# 575 s over 2 workers, and a clean clone's `.ci/run` 12 min 4 s with install and lint
# (2026-12-02); at 800 tests one process took 877 s. On a later, about 2x slower machine
# (torchvision's NMS and faster-coco-eval 2-5x slower too) 1,101 tests took 1,346 s and
# `.ci/run` 27 min 44 s; the heaviest files were test_cli_detection and test_bench_smoke
# (~275 s each), test_export (162 s), test_cli_engine and test_distributed (~120 s each).
# The 15 slowest tests are listed after each run, to show where the suite's time goes
TEST_WORKERS ?= 2

.PHONY: demo test lint format clean

demo: $(STAMP)
	$(BIN)/cvkit demo

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations 15 $(PYTEST_ARGS)

# ruff; the layers (import-linter contracts in pyproject.toml); the types (mypy)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy cvkit plugins/cvkit_classic/cvkit_classic

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# setup.py builds the C soft-NMS kernel in place: a change to its source reinstalls too
$(STAMP): pyproject.toml setup.py cvkit/ops/_soft_nms.c $(PLUGIN_PROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,weights,export]" $(foreach p,$(PLUGIN_PROJECTS),-e $(dir $(p)))
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
