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

# Every stage on Pong, on the CPU, with small budgets (about ten minutes on 2 cores).
demo: install
	$(BIN)/insight games
	$(BIN)/insight segment --game Pong --frames 2000 --device cpu
	$(BIN)/insight pretrain --game Pong --epochs 3 --device cpu
	$(BIN)/insight train --game Pong --load-cnn --total-steps 2048 --num-steps 32 --eval-episodes 1 --eval-every 0.5 --run-name demo --device cpu
	$(BIN)/insight extract-policy data/Pong/runs/demo/run.ckpt --max-terms 8 --episodes 1 --device cpu
	$(BIN)/insight evaluate data/Pong/runs/demo/run.ckpt --actor symbolic --episodes 2 --video --video-steps 600 --device cpu
	$(BIN)/insight explain data/Pong/runs/demo/run.ckpt --decisions 2 --device cpu

test: install
	$(BIN)/python -m pytest -n 2 -q

bench: install
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/segment_throughput.py
	$(BIN)/python benchmarks/pretrain_throughput.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
