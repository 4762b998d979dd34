# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine: they create .venv and install
# everything themselves, PyTorch first (CPU build unless GPU=1), with every version pinned in constraints.txt.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,ml,train,aws,server,onnx,openvino,sdk,monitor,ray
# A folder holding a torch wheel (passed to pip as --find-links), and/or an index to find it in.
TORCH_WHEEL_DIR ?=
TORCH_INDEX_URL ?=
GPU ?= 0
TORCH_VERSION := 2.13.0

ifeq ($(GPU),1)
CONSTRAINTS := $(VENV)/constraints-gpu.txt
TORCH_SPEC := torch==$(TORCH_VERSION)
else
CONSTRAINTS := constraints.txt
TORCH_SPEC := torch==$(TORCH_VERSION)
endif
TORCH_FLAGS := $(if $(TORCH_WHEEL_DIR),--find-links $(TORCH_WHEEL_DIR)) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
PIP := PIP_CONSTRAINT=$(abspath $(CONSTRAINTS)) PIP_DISABLE_PIP_VERSION_CHECK=1 $(PY) -m pip

.PHONY: install demo test test-fast test-containers lint format bench bench-quick bench-gpu clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ "$(GPU)" = "1" ]; then grep -v '^torch==' constraints.txt > $(CONSTRAINTS); fi
	$(PIP) install -q $(TORCH_FLAGS) $(TORCH_SPEC) numpy
	$(PY) -c "import torch, sys; cuda = torch.version.cuda; print('torch', torch.__version__, 'cuda', cuda); sys.exit(0 if ($(GPU) == 1 or cuda is None) else 'a CUDA build of torch was installed; expected the CPU build (set GPU=1 to allow it)')"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	$(PY) -c "import torch, sys; sys.exit(0 if ($(GPU) == 1 or torch.version.cuda is None) else 'a later install step replaced torch with a CUDA build')"
	touch $@

demo: install
	$(VENV)/bin/batchlane demo

test: install
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Everything but the tests marked slow (server subprocesses, training, > ~1 s each): under a minute on 2 cores.
test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

# The container tests (tests/container): build deploy/Dockerfile and run the image as SageMaker does. They need a
# Docker daemon (../shared/tools/docker-up.sh on the project's machines) and fail without one; `make test` skips them.
test-containers: install
	$(PY) -m pytest -q -p no:cacheprovider -m container tests/container $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: install
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

bench-quick: install
	$(PY) bench/run.py --quick $(BENCH_ARGS)

bench-gpu: install
	$(PY) bench/gpu.py $(BENCH_ARGS)

.PHONY: bench-ray
bench-ray: install
	$(PY) bench/ray_scaling.py $(BENCH_ARGS)

.PHONY: bench-load bench-soak
bench-load: install
	$(PY) bench/control_plane_load.py $(BENCH_ARGS)

bench-soak: install
	$(PY) bench/serve_soak.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
