# Tri-Level E-ViT. `make demo` and `make test` set up their own virtual environment.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo
VITIS_HLS ?= vitis_hls
VIVADO ?= vivado

.PHONY: venv demo test lint format bench-gpu bench-fixed-point csim hls bitstream check-vitis-hls check-vivado clean

venv: $(STAMP)
$(STAMP): pyproject.toml host/pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, from the two pinned builds that also make torchvision (and so timm) work
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[export,dev]' -e ./host
	# the ap_types headers for the engine's C++ (hls/); hls4ml's own dependencies are not needed
	$(PIP) install -q --no-deps hls4ml==1.3.0
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package.
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
fashion-mnist:
	@test -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz || \
	  (command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null) || \
	  { echo "error: Fashion-MNIST not found in $(FMNIST_DIR); install dataset-fashion-mnist" >&2; exit 1; }

# Main job: train a small Tri-Level ViT on Fashion-MNIST, export its fixed-point package, check
# the bit-accurate reference against the float model, run the package through the engine's C-sim
# (inference, then a short per-sample training run on the device) and print the latency table
# (engine figures from the cycle model, labelled estimated; GPU figures measured).
DEMO_IMAGES ?= 100
DEMO_STEPS ?= 20
demo: venv fashion-mnist csim
	$(PY) -m trilevel.cli train --model fmnist-tiny --dataset fashion-mnist --epochs 4 \
	  --token-keep 0.7 --attn-keep 0.5 --example-keep 0.8 --example-updates 2 \
	  --batch-size 128 --lr 2e-3 --mixup 0 --cutmix 0 --drop-path 0 --output $(DEMO_OUT)
	$(PY) -m trilevel.cli export --checkpoint $(DEMO_OUT)/last.pt --output $(DEMO_OUT)/package
	$(PY) bench/fixed_point_agreement.py --checkpoint $(DEMO_OUT)/last.pt --package $(DEMO_OUT)/package \
	  --images 2000 --output $(DEMO_OUT)/fixed_point_agreement.json
	$(PY) -m trilevel_host.cli infer --package $(DEMO_OUT)/package --backend csim --limit $(DEMO_IMAGES) \
	  --output $(DEMO_OUT)/engine_infer.json
	$(PY) -m trilevel_host.cli train --package $(DEMO_OUT)/package --backend csim --steps $(DEMO_STEPS) \
	  --lr 3e-4 --eval $(DEMO_IMAGES) --output $(DEMO_OUT)/package_engine_trained
	$(PY) -m trilevel_host.cli compare --output-dir $(DEMO_OUT)/compare

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

# The engine (hls/, see hls/README.md). csim needs only g++ and the hls4ml pip package (for its
# ap_types headers); hls and bitstream need Vitis HLS and Vivado on PATH and stop at once,
# with one line, when they are absent.
HLS_PY = $(if $(wildcard $(PY)),$(abspath $(PY)),python3)

csim:
	$(MAKE) -C hls csim PYTHON=$(HLS_PY)

check-vitis-hls:
	$(if $(shell command -v $(VITIS_HLS)),,$(error $(VITIS_HLS) not found on PATH: make hls needs Vitis HLS 2022.1 or later (source its settings64.sh)))
check-vivado:
	$(if $(shell command -v $(VIVADO)),,$(error $(VIVADO) not found on PATH: make bitstream needs Vivado 2022.1 or later (source its settings64.sh)))

# Vitis HLS: C simulation and co-simulation of the test vectors, synthesis, IP export.
hls: check-vitis-hls venv
	$(MAKE) -C hls hls PYTHON=$(abspath $(PY)) VITIS_HLS=$(VITIS_HLS)

# Vivado: the ZCU102 overlay in bitstreams/ (.bit, .hwh and the .json manifest); exports the IP first if needed.
bitstream: check-vivado venv
	$(MAKE) -C hls bitstream PYTHON=$(abspath $(PY)) VITIS_HLS=$(VITIS_HLS) VIVADO=$(VIVADO)

clean:
	rm -rf runs build .pytest_cache
