# The two commands of the README: `make demo` and `make test`. Both bootstrap .venv from the repo's files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench bench-scale soak clean venv install uninstall

$(BIN)/python:
	@$(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null

$(STAMP): $(BIN)/python pyproject.toml
	@echo "installing hubsync into $(VENV) ..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

# `make install`: hubsync on the PATH as $(PREFIX)/bin/hubsync (default ~/.local/bin). With pipx
# it is a pipx install; without, a private venv in $(PREFIX)/share/hubsync (what pipx does), so
# it never touches the system's Python (Debian refuses `pip install --user` there).
PREFIX ?= $(HOME)/.local
install:
	@if command -v pipx >/dev/null 2>&1 && [ -z "$(NO_PIPX)" ]; then \
		pipx install --force . ; \
	else \
		$(PY) -m venv $(PREFIX)/share/hubsync/venv && \
		$(PREFIX)/share/hubsync/venv/bin/python -m pip install -q --disable-pip-version-check . && \
		mkdir -p $(PREFIX)/bin && \
		ln -sf $(PREFIX)/share/hubsync/venv/bin/hubsync $(PREFIX)/bin/hubsync && \
		echo "installed $(PREFIX)/bin/hubsync"; \
	fi
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "note: add $(PREFIX)/bin to your PATH";; esac

uninstall:
	rm -rf $(PREFIX)/share/hubsync/venv $(PREFIX)/bin/hubsync

demo: $(STAMP)
	@$(BIN)/hubsync demo

# The suite runs on TEST_WORKERS parallel workers (pytest-xdist); most tests wait on sockets and
# subprocesses, so more workers than cores pays. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 4
test: $(STAMP)
	@$(BIN)/python -m ruff check transfer agent emulator tests bench
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)
	@$(BIN)/python -m ruff check transfer agent emulator tests bench
	@$(BIN)/python -m mypy transfer agent

bench: $(STAMP)
	@$(BIN)/python -m bench

# 1,000,000 files (bench/.work/, made once and kept): first sync, dry runs, no-ops, check. Takes long.
bench-scale: $(STAMP)
	@$(BIN)/python -m bench --cases scale $(BENCH_ARGS)

soak: $(STAMP)
	@$(BIN)/python -m tests.soak

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
