# The Layer Norm book. The two commands a reader needs:
#   make book   set up .venv (first time only) and build the site into _build/html
#   make test   set up .venv (first time only) and run the whole test suite
# Both are idempotent: the environment is reinstalled only when requirements.txt
# changes, and notebooks are re-executed only when they change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test bench gpu-check linkcheck lint clean env shared-cells colab-check

env: $(STAMP)

$(STAMP): requirements.txt constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	@touch $(STAMP)

book: $(STAMP)
	$(BIN)/python -m booktools build
	@$(BIN)/python -m booktools.execution
	@echo "The book is in _build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest
	@echo "Test report above; the built book is in _build/html/index.html"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run
	@echo "Benchmark results are in benchmarks/results/; the page is book/benchmark_results.md"

# On a machine with a CUDA GPU whose Python already has PyTorch, Triton, pytest, matplotlib and
# tqdm (no .venv, no network): chapter 6's GPU tests and compile test, the GPU benchmark (JSON
# and results page) and chapter 6 executed on the GPU. About 6 minutes on an H100/H200.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) -m benchmarks.gpu_check $(if $(OUT),--out $(OUT))

# Page weights and screenshots of the built site, for a person to look at (the browser
# tests assert; this only measures): _build/site-report/. Builds the book first (from the
# execution cache when nothing changed). Needs Debian's Chromium, as the tests do.
.PHONY: site-report
site-report: book
	$(BIN)/python -m booktools.site_report

# External links need a network, so this is not part of `make test`. Notebooks come
# from the execution cache of `make book`. Jupyter Book writes the report into
# _build/html; it is moved to _build/linkcheck so that it is never published. Fails
# when a link is broken.
linkcheck: $(STAMP)
	@status=0; $(BIN)/jupyter-book build . --builder linkcheck || status=$$?; \
	mkdir -p _build/linkcheck; \
	for f in output.txt output.json; do \
	  if [ -f _build/html/$$f ]; then mv -f _build/html/$$f _build/linkcheck/$$f; fi; \
	done; \
	echo "Link check report: _build/linkcheck/output.txt"; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .

# Rewrite every copy of a shared cell (cell tag shared:<key>) from its source chapter.
shared-cells: $(STAMP)
	$(BIN)/python -m booktools.shared_cells --write

# Every chapter under Google Colab's published CPU runtime versions (colab/requirements-cpu.txt,
# from googlecolab/backend-info), each alone in an empty folder, in its own environment
# .venv-colab with Colab's Python (3.13). Not part of `make test`: torch from PyPI is a CUDA
# build of several GB. The environment is rebuilt from scratch when the pins change.
# CI passes the CPU build: make colab-check COLAB_PIP_OPTIONS="--extra-index-url URL".
COLAB_VENV := .venv-colab
COLAB_PINS := colab/requirements-cpu.txt
COLAB_STAMP := $(COLAB_VENV)/.installed
COLAB_PIP_OPTIONS ?=
# Colab's Python: python3.13 on the PATH if it runs, else pyenv's 3.13.
COLAB_PYTHON ?= $(shell python3.13 -c '' 2>/dev/null && echo python3.13 || \
	ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3 2>/dev/null | tail -n 1)

$(COLAB_STAMP): $(COLAB_PINS)
	@test -n "$(COLAB_PYTHON)" || { echo "no Python 3.13 found: make colab-check COLAB_PYTHON=/path/to/python3.13" >&2; exit 1; }
	rm -rf $(COLAB_VENV)
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --quiet $(COLAB_PIP_OPTIONS) -r $(COLAB_PINS)
	$(COLAB_VENV)/bin/python -m booktools.colab_check --prune
	@touch $(COLAB_STAMP)

# Colab's CPU runtime has no Triton: chapter 6 installs the release that matches torch, and
# the check runs it a second time with that release (installed here, outside the pins).
COLAB_TRITON := $(COLAB_VENV)/triton
$(COLAB_TRITON)/.installed: $(COLAB_STAMP)
	rm -rf $(COLAB_TRITON)
	$(COLAB_VENV)/bin/python -m pip install --quiet --no-deps $(COLAB_PIP_OPTIONS) --target $(COLAB_TRITON) \
	  "triton==$$($(COLAB_VENV)/bin/python -m booktools.colab_check --triton-version)"
	@touch $@

colab-check: $(COLAB_STAMP) $(COLAB_TRITON)/.installed
	$(COLAB_VENV)/bin/python -m booktools.colab_check --triton $(COLAB_TRITON)

clean:
	rm -rf _build
