# edgetrain — the two commands that do everything on a fresh machine:
#   make run    set up, train LeNet on MNIST for one epoch, save the model and the plot
#   make test   set up and run the whole test suite (C kernels on x86 and arm64/qemu, Python)
# Also: make bench (benchmarks), make bench-quick (CI smoke run), make clean,
#   make fuzz      libFuzzer campaign over the C runtime (FUZZ_SECONDS, default 600; needs clang)
#   make fuzz-ci   the C tests under ASan + UBSan, then a 60-second fuzz campaign

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
BUILT := $(VENV)/.built-stamp
# torch is a test/benchmark dependency only, and always this CPU build (never plain `torch`).
# flwr (with Ray, its simulation runtime) is the federated extra: tests/test_federated.py needs it.
# onnx + onnxruntime are the onnx extra (tests/test_onnx_export.py, tests/test_convert.py);
# onnxscript lets torch's dynamo exporter run there.
TEST_DEPS := numpy Cython setuptools wheel pytest pytest-benchmark Pillow matplotlib torch==2.13.0 threadpoolctl "flwr[simulation]==1.42.0" onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2
EPOCHS ?= 1
THREADS ?= 2
# how long `make run` trains (the test of the main job runs it with "--iterations 20")
RUN_LENGTH ?= --epochs $(EPOCHS)

.PHONY: run test test-c test-py bench bench-deps bench-quick build clean fuzz fuzz-ci

$(STAMP): pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q $(TEST_DEPS)
	touch $@

$(BUILT): $(STAMP) setup.py kernels/sources.txt $(wildcard kernels/*/*.c kernels/*/*.h kernels/include/edgetrain/*.h edgetrain/*.pyx edgetrain/*.pxd edgetrain/data/*.pyx)
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $@

build: $(BUILT)

run: $(BUILT)
	$(PY) -m edgetrain train lenet --data data/mnist $(RUN_LENGTH) --batch-size 64 \
		--threads $(THREADS) --out out/lenet.etm

test-c:
	$(MAKE) -C kernels test

FUZZ_SECONDS ?= 600
fuzz:
	$(MAKE) -C kernels fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

fuzz-ci:
	$(MAKE) -C kernels test-sanitize
	$(MAKE) -C kernels fuzz FUZZ_SECONDS=60

test-py: $(BUILT)
	$(PY) -m pytest -q

test: $(BUILT)
	$(PY) -m pytest -q

# Optional baselines for `make bench` only (not CI): their benchmarks skip when these are missing.
# onnxruntime-training ships its own `onnxruntime` package (1.19.2), which would overwrite the
# venv's onnxruntime 1.32 (the onnx extra, tests/test_onnx_*.py, benchmarks/test_bench_int8.py),
# so the baselines go to a folder of their own that only the training benchmarks see.
BENCH_OPTIONAL_DEPS := MNN==3.6.1 onnxruntime-training==1.19.2
BENCH_OPTIONAL_DIR := $(VENV)/bench-optional

bench-deps: $(STAMP)
	$(PY) -m pip install -q --no-deps --target $(BENCH_OPTIONAL_DIR) $(BENCH_OPTIONAL_DEPS) || echo "bench: MNN / onnxruntime-training optional baselines not installed; their benchmarks will skip"

bench: $(BUILT) bench-deps
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) -m pytest benchmarks -q --benchmark-columns=median,iqr,ops --benchmark-sort=name --ignore=benchmarks/test_bench_training.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=$(abspath $(BENCH_OPTIONAL_DIR)) $(PY) -m pytest benchmarks/test_bench_training.py -q --benchmark-columns=median,iqr,ops --benchmark-sort=name

bench-quick: $(BUILT)
	EDGETRAIN_BENCH_QUICK=1 $(PY) -m pytest benchmarks -q --benchmark-disable

clean:
	rm -rf build kernels/build $(VENV) edgetrain/*.so edgetrain/data/*.so edgetrain/_native.c
