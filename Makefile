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

# create and migrate the temporary server's database (~/.prefect/prefect.db, or under PREFECT_HOME) now: the first
# temporary server of a machine otherwise builds it first, 7 s of the first run's start on a 2-core machine. Left
# alone where PREFECT_API_URL or PREFECT_API_DATABASE_CONNECTION_URL names a server or database of the user's own.
# The stamp is written even when it fails, as for the UMAP warm-up: the first run then builds it.
$(VENV)/.prefect-db: $(BIN)/soxai
	@if [ -n "$$PREFECT_API_URL$$PREFECT_API_DATABASE_CONNECTION_URL" ]; then \
	  echo "note: a Prefect server or database is configured; its database is left as it is"; \
	else \
	  $(BIN)/prefect server database upgrade -y >/dev/null || echo "note: Prefect's database was not created ahead; the first run creates it"; \
	fi
	touch $(VENV)/.prefect-db

setup: $(BIN)/soxai $(VENV)/.umap-warm $(VENV)/.prefect-db

demo: setup
	$(BIN)/soxai run

# two pytest-xdist workers, one per core of the CI machine (5 min 37 s against 8 min 43 s in one process on it,
# docs/BENCHMARKS.md); each runs torch on its share of the cores (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(BIN)/soxai
	SOXAI_PROGRESS=0 $(BIN)/pytest -q -n $(TEST_WORKERS)

lint: $(BIN)/soxai
	$(BIN)/ruff check soxai flows tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
