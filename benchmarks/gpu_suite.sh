#!/usr/bin/env bash
# The GPU suite on the device machine, in one `run` call (benchmarks/gpu_suite.py's docstring).
#
# Here, once, from the repository root (both folders are git-ignored, so they travel only by `carry`):
#     python benchmarks/gpu_suite_data.py --out .gpu_data/cifar10-12k --train 10000 --test 2000   # 35 MiB
#     # optional, for the lightly row (a 0.3 MB pure-Python wheel; its needs are in the H200 image):
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_17_x86_64 -d .whl lightly==1.6.0
# Then the device call (600 s limit: the suite budgets 510 s of its own and stops itself):
#     run(command="bash benchmarks/gpu_suite.sh", carry=[".gpu_data", ".whl"], timeout_s=600)
# What comes back from $OUT/gpu_suite (7 files): report.json, report.md, log.txt and
# dino_export/{encoder.safetensors,encoder.safetensors.sha256,model_card.json,README.md}.
set -o pipefail
OUT_DIR="${OUT:-gpu_suite_out}/gpu_suite"
PY="${PYTHON:-python3}"   # the device's python3 holds torch
DATA="${GPU_SUITE_DATA:-.gpu_data/cifar10-12k}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
"$PY" benchmarks/gpu_suite.py --data "$DATA" --out "$OUT_DIR" --budget-s "${GPU_SUITE_BUDGET_S:-510}" 2>&1 \
    | tee "$OUT_DIR/log.txt"
