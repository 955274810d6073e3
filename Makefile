# The README's two commands: `make reproduce` (the main job) and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

# Data root: $ROBUSTLIB_DATA if set, else ../shared/data when it exists beside the checkout, else ./data.
ROBUSTLIB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
export ROBUSTLIB_DATA
PROFILE ?= smoke

.PHONY: install test test-fast reproduce book browser clean help

help:
	@echo "make reproduce   create .venv, install, run every notebook (PROFILE=$(PROFILE)) and build its book under runs/"
	@echo "make test        create .venv if missing, install, run the whole test suite (what CI runs)"
	@echo "make test-fast   unit tests only (no notebook batch, book or browser): the inner loop"
	@echo "make book        build the published book into _build/html"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[book,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (robustlib)"
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser test (installed when absent; needs root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Trained smoke models are shared between the papermill pass (tests/) and the nbval pass (notebooks/) of one run.
TEST_CACHE := $(CURDIR)/runs/test-cache
test: install browser
	rm -rf $(TEST_CACHE)
	ROBUSTLIB_CHECKPOINTS=$(TEST_CACHE) $(PY) -m pytest tests
	ROBUSTLIB_CHECKPOINTS=$(TEST_CACHE) ROBUSTLIB_PROGRESS=0 $(PY) -m pytest --nbval-lax -p no:cacheprovider notebooks

# The inner loop: unit tests only (the notebook batch, the books and the browser are marked slow).
test-fast: install
	ROBUSTLIB_PROGRESS=0 $(PY) -m pytest -m "not slow" -q tests

reproduce: install
	$(PY) -m robustlib reproduce --profile $(PROFILE)

book: install
	$(PY) -m robustlib book

clean:
	rm -rf _build runs/smoke
