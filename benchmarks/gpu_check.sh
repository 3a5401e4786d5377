#!/usr/bin/env bash
# One prepared run on a CUDA machine: GPU parity tests, the engine benchmark with the live
# pipeline on the GPU, and a short pretraining on the GPU. Results go to $OUT (default
# /tmp/gpu-check). Python packages missing there (no internet) can travel as wheels in .whl/.
#
#     OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD
fi
{ nvidia-smi -L; python3 -c "import torch, onnxruntime as o; print('torch', torch.__version__, torch.cuda.get_device_name(0), '| onnxruntime', o.__version__, o.get_available_providers())"
  python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1 | tail -1; } | tee "$OUT/gpu.txt"

echo "== parity tests (-m gpu)"
timeout 240 python3 -m pytest -q -m gpu tests/backends/test_parity.py -p no:cacheprovider -o addopts="-ra" \
    2>&1 | tee "$OUT/gpu-tests.log" | tail -8

echo "== engines + pipeline on the GPU"
timeout 300 python3 benchmarks/engines.py --seconds 0.5 --pipeline --out "$OUT/engines-gpu.json" >/dev/null \
    2>"$OUT/engines.err"; echo "rc $?"; tail -c 600 "$OUT/engines.err"
python3 - "$OUT/engines-gpu.json" <<'PY' || true
import json, sys
r = json.loads(open(sys.argv[1]).read())
for name, e in r["engines"].items():
    print(name, e.get("skipped") or {m: e[m]["128"] for m in ("image", "profile")})
print("pipeline", json.dumps(r.get("pipeline"))[:1500])
PY

echo "== pretrain on the GPU (1 epoch, 1,200 pairs)"
python3 -m plankton_stream simulate --out /tmp/gpu-sim --seed 5 --particles 1200 --image-fraction 1.0 --frames crop >/dev/null
SECONDS=0
timeout 180 python3 -m plankton_stream pretrain --data /tmp/gpu-sim --out /tmp/gpu-model --epochs 1 --device cuda \
    --no-cache --quiet 2>&1 | tail -3
echo "pretrain seconds (with data preparation): $SECONDS" | tee -a "$OUT/gpu.txt"
