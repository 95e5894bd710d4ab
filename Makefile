# The Layer Norm book. The two commands a reader needs:
#   make book   set up .venv (first time only) and build the site into _build/html
#   make test   set up .venv (first time only) and run the whole test suite
# Both are idempotent: the environment is reinstalled only when requirements.txt
# changes, and notebooks are re-executed only when they change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test bench gpu-check linkcheck lint clean env shared-cells

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

clean:
	rm -rf _build
