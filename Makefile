# One virtual environment in .venv; every target installs what it needs first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

$(BIN)/soxai: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the local CPU build (an unpinned resolve would pull a CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/soxai

# compile UMAP's numba kernels into numba's cache now, not in the first run (soxai/embed/warmup.py). The tests
# skip it: tests/conftest.py gives them a numba cache of their own, which this would not fill.
$(VENV)/.umap-warm: $(BIN)/soxai
	$(BIN)/python -m soxai.embed.warmup || echo "note: UMAP's kernels were not compiled ahead; the first run compiles them"
	touch $(VENV)/.umap-warm

setup: $(BIN)/soxai $(VENV)/.umap-warm

demo: setup
	$(BIN)/soxai run

test: $(BIN)/soxai
	SOXAI_PROGRESS=0 $(BIN)/pytest -q

lint: $(BIN)/soxai
	$(BIN)/ruff check soxai flows tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
