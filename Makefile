# Tri-Level E-ViT. `make demo` and `make test` set up their own virtual environment.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo
HLS_TOOL ?= vitis_hls

.PHONY: venv demo test lint format bench-gpu bench-fixed-point hls-synth bitstream clean

venv: $(STAMP)
$(STAMP): pyproject.toml host/pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, from the two pinned builds that also make torchvision (and so timm) work
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[export,dev]' -e ./host
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package.
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
fashion-mnist:
	@test -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz || \
	  (command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null) || \
	  { echo "error: Fashion-MNIST not found in $(FMNIST_DIR); install dataset-fashion-mnist" >&2; exit 1; }

# Main job: train a small Tri-Level ViT on Fashion-MNIST, export its fixed-point package and
# check the bit-accurate reference against the float model on 2,000 test images.
demo: venv fashion-mnist
	$(PY) -m trilevel.cli train --model fmnist-tiny --dataset fashion-mnist --epochs 4 \
	  --token-keep 0.7 --attn-keep 0.5 --example-keep 0.8 --example-updates 2 \
	  --batch-size 128 --lr 2e-3 --mixup 0 --cutmix 0 --drop-path 0 --output $(DEMO_OUT)
	$(PY) -m trilevel.cli export --checkpoint $(DEMO_OUT)/last.pt --output $(DEMO_OUT)/package
	$(PY) bench/fixed_point_agreement.py --checkpoint $(DEMO_OUT)/last.pt --package $(DEMO_OUT)/package \
	  --images 2000 --output $(DEMO_OUT)/fixed_point_agreement.json

test: venv fashion-mnist
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# GPU benchmarks: run on a machine with a CUDA GPU; results land in bench/results/.
bench-gpu:
	$(PY) bench/token_throughput.py
	$(PY) bench/gpu_training.py

bench-fixed-point: venv fashion-mnist
	$(PY) bench/fixed_point_agreement.py --checkpoint $(DEMO_OUT)/last.pt

# Synthesis needs the Xilinx tools; fail at once when they are absent.
hls-synth bitstream:
	@command -v $(HLS_TOOL) >/dev/null || { echo "error: $(HLS_TOOL) not found: $@ needs Vitis HLS / Vivado on PATH" >&2; exit 2; }
	@echo "error: the HLS engine does not exist yet (see hls/README.md)" >&2; exit 2

clean:
	rm -rf runs build .pytest_cache
