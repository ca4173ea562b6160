# Two entry points: `make demo` and `make test`. Both create .venv on first use and are quick after.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kdas-installed

.PHONY: demo test lint bench

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kdas needs Python >= 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)

# torch first and pinned (pip finds it in the local wheel store or a registry), so the editable
# install never pulls a newer one.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[cpu,serve,openvino,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kdas pipeline examples/demo.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check kdas tests benchmarks examples
	$(BIN)/ruff format --check kdas tests benchmarks examples

# Every benchmark, one after the other (about an hour on 2 cores); results in docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data_synth.py
	$(BIN)/python benchmarks/bench_eval.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/bench_deploy.py
	$(BIN)/python benchmarks/bench_index.py
	$(BIN)/python benchmarks/bench_service.py
