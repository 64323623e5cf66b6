# Two entry points on a fresh machine: `make demo` (the transfer recipe on the built-in corpus)
# and `make test`. Both create .venv and install xvjax into it first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,tfds]'
	touch $@

demo: install
	$(BIN)/xvjax demo --workdir=exp/demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Test modules run in parallel workers, one per core (at most 4), whole modules per worker so
# module fixtures are built once; the long end-to-end modules start first (tests/conftest.py).
test: lint
	$(BIN)/pytest -q -n auto --maxprocesses=4 --dist loadfile

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) exp
