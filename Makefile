# The two commands of the README: `make demo` and `make test`. Both bootstrap .venv from the repo's files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench soak clean venv

$(BIN)/python:
	@$(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null

$(STAMP): $(BIN)/python pyproject.toml
	@echo "installing hubsync into $(VENV) ..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@$(BIN)/hubsync demo

test: $(STAMP)
	@$(BIN)/python -m ruff check transfer agent emulator tests bench
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	@$(BIN)/python -m ruff check transfer agent emulator tests bench
	@$(BIN)/python -m mypy transfer agent

bench: $(STAMP)
	@$(BIN)/python -m bench

soak: $(STAMP)
	@$(BIN)/python -m tests.soak

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
