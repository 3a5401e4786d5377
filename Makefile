# Two commands do all the set-up on a fresh machine (see README):
#   make demo   installs what is missing, then runs the live demo on the embedded default
#   make test   installs what is missing, then runs the test suite
# Both are idempotent: the venv is rebuilt only when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build on this kind of machine (a local wheel); on a CUDA workstation or Jetson set
# TORCH_SPEC to the build you need, or pre-install torch in the venv (README, "GPU machines").
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,onnx
STAMP  := $(VENV)/.installed-$(shell echo "$(TORCH_SPEC) $(EXTRAS)" | cksum | cut -d' ' -f1)

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/plankton-stream demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/ingest.py

clean:
	rm -rf $(VENV) build *.egg-info
