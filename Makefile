# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch goes in first, so nothing below pulls the multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	echo '$(TORCH)' > $(VENV)/constraints.txt
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet --constraint $(VENV)/constraints.txt -e '.[test]'
	touch $@

# Learning you can see, on the CPU: every stage on Catch with the cpu preset (60k env steps: the
# agent goes from random play to near the optimum and the equations play as well), then every
# stage on Pong with the demo preset's tiny budgets (no learning: it shows the Pong pipeline).
demo: install
	$(BIN)/insight games
	$(BIN)/insight pipeline --game Catch --preset cpu --epochs 20 --total-steps 60000 --lr 1e-3 --device cpu
	$(BIN)/insight pipeline --game Pong --preset demo --device cpu

# Lint and format check first (seconds), then the suite.
test: install
	$(BIN)/ruff check insight_cli tests benchmarks
	$(BIN)/ruff format --check insight_cli tests benchmarks
	$(BIN)/python -m pytest -n 2 -q

bench: install
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/segment_throughput.py
	$(BIN)/python benchmarks/pretrain_throughput.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
