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
EXTRAS ?= dev,onnx,ray
# the dashboard's browser test drives Debian's chromium (Playwright's own download is not needed)
CHROMIUM ?= /usr/bin/chromium
STAMP  := $(VENV)/.installed-$(shell echo "$(TORCH_SPEC) $(EXTRAS)" | cksum | cut -d' ' -f1)

.PHONY: install demo test bench clean default-model browser

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

test: $(STAMP) browser
	$(PY) -m pytest -q

# installs chromium once (apt-get, as root or through sudo); where that is impossible the
# browser test skips and says why
browser:
	@test -x $(CHROMIUM) || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null) \
	  || echo "WARNING: could not install chromium; the dashboard browser test will skip"; }

bench: $(STAMP)
	$(PY) benchmarks/ingest.py

clean:
	rm -rf $(VENV) build *.egg-info

# The shipped default model, its SimCLR baseline and the default gallery, exactly as built
# (about 25 minutes on 2 CPU cores). See plankton_stream/assets/README.md.
PS := $(VENV)/bin/plankton-stream
ASSETS := plankton_stream/assets
default-model: $(STAMP)
	rm -rf build/sim-train build/sim-gallery
	$(PS) simulate --out build/sim-train --seed 100 --particles 2000 --samples 6 --image-fraction 1.0 --frames crop --community shapes
	$(PS) pretrain --data build/sim-train --out $(ASSETS)/models/default --baseline $(ASSETS)/models/baseline-simclr --seed 0 --no-cache --quiet
	$(PS) simulate --out build/sim-gallery --seed 300 --particles 1500 --image-fraction 1.0 --frames crop --community shapes
	$(PS) gallery build --data build/sim-gallery --model $(ASSETS)/models/default --per-class 20 --seed 0 --no-cache --out $(ASSETS)/galleries/default.npz
	$(PS) compile --backend onnx --model $(ASSETS)/models/default --into-model
