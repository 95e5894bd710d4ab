# The Layer Norm book. The two commands a reader needs:
#   make book   set up .venv (first time only) and build the site into _build/html
#   make test   set up .venv (first time only) and run the whole test suite
# Both are idempotent: the environment is reinstalled only when requirements.txt
# changes, and notebooks are re-executed only when they change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test bench linkcheck lint clean env shared-cells

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
	@echo "Benchmark results are in benchmarks/results/"

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

clean:
	rm -rf _build
