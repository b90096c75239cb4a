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

# Every stage on Pong, on the CPU, with the demo preset's small budgets (about six minutes on 2 cores).
demo: install
	$(BIN)/insight games
	$(BIN)/insight pipeline --game Pong --preset demo --device cpu

test: install
	$(BIN)/python -m pytest -n 2 -q

bench: install
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/segment_throughput.py
	$(BIN)/python benchmarks/pretrain_throughput.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
