#!/usr/bin/env bash
# The GPU check: images/s and peak GPU memory of the paper's big networks.
#
# Measures build_parallel_dr(n_branches=12), build_dr(capsule_layers=3),
# build_parallel_em(n_branches=10) and build_resnext50 at 400x400, batch 15,
# one training step after a warm-up (compilation) step, on every Keras
# backend that is importable and sees a GPU, and writes a markdown table to
# $OUT/gpu_check.md (with the card's name) and a log to $OUT/gpu_check.log.
# Each model runs in its own process under a time limit taken from what is
# left of BUDGET_S, so the whole run stays under 8 minutes; a model that
# runs out of time is reported as stopped. The steps themselves come from
# benchmarks/models_step.py (`measure`).
#
# On the device tool's GPU machine (no internet; it has python3 with torch
# and jax for CUDA, but neither keras nor tensorflow):
#   1. here, once:   benchmarks/gpu_check.sh fetch
#      downloads the keras wheel and the two of its dependencies that
#      machine lacks (namex, optree) for CPython 3.12 into .whl/ (2.8 MB,
#      ignored by git through .git/info/exclude).
#   2. run tool:     command "bash benchmarks/gpu_check.sh", carry [".whl"],
#      timeout_s 540.
# keras_parcaps itself travels with the working tree (PYTHONPATH=.).
# TensorFlow's GPU wheels (about 600 MB) cannot travel within the 64 MiB a
# call may carry, so TensorFlow is measured only where it is installed; a
# backend that is not importable or sees no GPU is listed as missing, with
# the reason, in the table.
#
# Settings (environment): SIZE (400), BATCH (15), STEPS (3 timed steps, the
# best is kept), BUDGET_S (400 s for all measurements), MODEL_CAP_S (150 s
# per model at most), BACKENDS ("jax torch tensorflow"), MODELS (the four
# names below), ALLOW_CPU=1 measures on the CPU when there is no GPU (to test
# this script; memory is then the peak RSS), PYTHON (python3).
#   Test on a CPU: SIZE=48 BUDGET_S=120 ALLOW_CPU=1 OUT=/tmp/g \
#                  PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
# The multi-process path: bash benchmarks/gpu_check.sh distributed (below).
# Learning on real cells at SIZE: bash benchmarks/gpu_check.sh comparison
# (below; `fetch` also copies the shared cells into .devdata/ for it).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "fetch" ]; then
    mkdir -p .git/info .whl
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    "$PYTHON" -m pip download --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0 || exit
    # The real cells for `comparison`: a copy that git ignores and only a
    # device call carries (the shared data beside the checkout does not travel).
    cells="${PARCAPS_DATA:-../shared/data}/pbc_matek_dev"
    if [ -d "$cells" ]; then
        grep -qx "/.devdata/" .git/info/exclude || echo "/.devdata/" >> .git/info/exclude
        mkdir -p .devdata && cp -r "$cells" .devdata/
    fi
    exit
fi

OUT=${OUT:-runs/gpu_check}
SIZE=${SIZE:-400}
BATCH=${BATCH:-15}
STEPS=${STEPS:-3}
BUDGET_S=${BUDGET_S:-400}
MODEL_CAP_S=${MODEL_CAP_S:-150}
BACKENDS=${BACKENDS:-"jax torch tensorflow"}
MODELS=${MODELS:-"parallel_dr_12 dr_3l_2mid parallel_em_10 resnext50"}
ALLOW_CPU=${ALLOW_CPU:-0}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
TABLE="$OUT/gpu_check.md"
: > "$LOG"
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false \
    TF_FORCE_GPU_ALLOW_GROWTH=true PYTHONUNBUFFERED=1

# Install the carried wheels only where keras is not importable already.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c "import keras" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target /tmp/parcaps_site .whl/*.whl >> "$LOG" 2>&1
        export PYTHONPATH="/tmp/parcaps_site:$PYTHONPATH"
    fi
    if ! "$PYTHON" -c "import keras" >> "$LOG" 2>&1; then
        echo "MISSING: keras is not importable and no usable wheels in .whl/" \
             "(run 'benchmarks/gpu_check.sh fetch' here and carry .whl)." | tee -a "$LOG"
        exit 1
    fi
fi

# `gpu_check.sh distributed`: the multi-process path instead of the models
# (benchmarks/multiprocess_check.py, about 2 minutes on 16 cores): torch
# DistributedDataParallel under torchrun with one process on the GPU (NCCL)
# against one plain process on the GPU; two torchrun processes on the CPU
# (gloo), two JAX processes (jax.distributed, CPU) and, where TensorFlow is
# installed, two MultiWorkerMirroredStrategy workers, each against one plain
# process: weights after the same steps, and steps/s. One GPU cannot be
# shared by two NCCL processes, hence the CPU for two. Cases run side by
# side (CASES overrides the list); writes $OUT/gpu_check_distributed.md.
if [ "${1:-}" = "distributed" ]; then
    CASES=${CASES:-}
    if [ -z "$CASES" ]; then
        if "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>>"$LOG"; then
            CASES="torch:gpu:1"
        fi
        CASES="$CASES torch:cpu:2 jax:cpu:2"
        if "$PYTHON" -c "import tensorflow" 2>>"$LOG"; then
            CASES="$CASES tensorflow:cpu:2"
        fi
    fi
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
    args=()
    for case in $CASES; do args+=(--case "$case"); done
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$LOG" 2>&1
    timeout -k 5 "${DIST_BUDGET_S:-220}" "$PYTHON" benchmarks/multiprocess_check.py \
        "${args[@]}" --jobs 4 --epochs 2 --steps "${DIST_STEPS:-6}" \
        --image-size "${DIST_SIZE:-32}" --timeout "${DIST_CASE_S:-200}" \
        --out "$OUT/distributed" 2>>"$LOG" | tee -a "$LOG"
    status=${PIPESTATUS[0]}
    {
        echo "## Multi-process check ($(date -u +%Y-%m-%d), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
        echo
        cat "$OUT/distributed/multiprocess_check.md" 2>/dev/null || echo "no table: exit status $status, see gpu_check.log"
    } > "$OUT/gpu_check_distributed.md"
    cat "$OUT/gpu_check_distributed.md"
    exit "$status"
fi

# `gpu_check.sh comparison`: benchmarks/model_comparison.py at SIZE on the
# real cells in .devdata/pbc_matek_dev (carry [".whl", ".devdata"]), fold 0,
# the learning rate decaying to 0 over COMPARE_BUDGET_S training seconds per
# network (240), COMPARE_JOBS networks at once (1: processes sharing one GPU
# slow each other down more than they gain), COMPARE_MODELS (the pooled
# 12-branch network), JAX unless KERAS_BACKEND says otherwise. Writes
# $OUT/comparison/results.md and curves.png.
if [ "${1:-}" = "comparison" ]; then
    KERAS_BACKEND=${KERAS_BACKEND:-jax} "$PYTHON" benchmarks/model_comparison.py \
        --data .devdata/pbc_matek_dev --image-size "$SIZE" --folds 0 --cosine-decay \
        --models ${COMPARE_MODELS:-pdr_3l_12b_pooled} --budget "${COMPARE_BUDGET_S:-240}" \
        --eval-every 250 --jobs "${COMPARE_JOBS:-1}" --timeout "${COMPARE_TIMEOUT_S:-450}" \
        --out "$OUT/comparison" 2>>"$LOG" | tee -a "$LOG"
    exit "${PIPESTATUS[0]}"
fi

# Prints "GPU <name>", "CPU" or "MISSING <reason>" for the current backend.
PROBE='
import keras
b = keras.backend.backend()
if b == "jax":
    import jax
    gpus = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    version = jax.__version__
elif b == "torch":
    import torch
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    version = torch.__version__
else:
    import tensorflow as tf
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    version = tf.__version__
print(("GPU " + gpus[0]) if gpus else "CPU", f"(keras {keras.__version__}, {b} {version})")
'

# One model: RESULT {"params", "first", "step", "peak_gib", "memory"}.
MEASURE='
import argparse, json, resource, sys
sys.path.insert(0, "benchmarks")
import keras
import models_step
name, size, batch, steps = sys.argv[1], *map(int, sys.argv[2:5])
r = models_step.measure(name, argparse.Namespace(size=size, batch=batch, steps=steps))
b, peak = keras.backend.backend(), None
if b == "jax":
    import jax
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
elif b == "torch":
    import torch
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
else:
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
r["memory"] = "GPU" if peak is not None else "RSS"
if peak is None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
r["peak_gib"] = peak / 2**30
print("RESULT " + json.dumps(r))
'

CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
{
    echo "## GPU check ($(date -u +%Y-%m-%d), ${CARD:-no nvidia-smi})"
    echo
    echo "Input ${SIZE}x${SIZE}, batch ${BATCH}; best of ${STEPS} train steps after one"
    echo "warm-up step; 'first step' includes tracing and compilation."
    echo
    echo "| backend | device | model | params | first step s | train step s | images/s | peak memory GiB |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} > "$TABLE"

RUN=()
for backend in $BACKENDS; do
    probe=$(KERAS_BACKEND=$backend timeout 120 "$PYTHON" -c "$PROBE" 2>>"$LOG" | tail -1)
    echo "probe $backend: ${probe:-not importable}" | tee -a "$LOG"
    case "$probe" in
        GPU*) RUN+=("$backend") ;;
        CPU*) if [ "$ALLOW_CPU" = 1 ]; then RUN+=("$backend")
              else echo "| $backend | MISSING: no GPU visible $probe | - | - | - | - | - | - |" >> "$TABLE"; fi ;;
        *) echo "| $backend | MISSING: not importable (see gpu_check.log) | - | - | - | - | - | - |" >> "$TABLE" ;;
    esac
    eval "DEVICE_$backend=\$probe"
done

SECONDS=0
n_models=$(echo $MODELS | wc -w)
left=$(( ${#RUN[@]} * n_models ))
for backend in "${RUN[@]}"; do
    eval "device=\$DEVICE_$backend"
    for model in $MODELS; do
        remaining=$(( BUDGET_S - SECONDS ))
        limit=$(( remaining / left ))
        [ "$limit" -gt "$MODEL_CAP_S" ] && limit=$MODEL_CAP_S
        left=$(( left - 1 ))
        if [ "$limit" -lt 10 ]; then
            echo "| $backend | $device | $model | - | not run: time budget spent | - | - | - |" >> "$TABLE"
            continue
        fi
        echo "== $backend $model (limit ${limit} s)" | tee -a "$LOG"
        output=$(KERAS_BACKEND=$backend timeout -k 5 "$limit" "$PYTHON" -c "$MEASURE" \
                 "$model" "$SIZE" "$BATCH" "$STEPS" 2>>"$LOG")
        status=$?
        result=$(echo "$output" | grep '^RESULT ' | tail -1)
        if [ -n "$result" ]; then
            echo "${result#RESULT }" >> "$LOG"
            echo "${result#RESULT }" | "$PYTHON" -c "
import json, sys
r = json.loads(sys.stdin.read())
print(f'| $backend | $device | $model | {r[\"params\"] / 1e6:.1f}M | {r[\"first\"]:.1f} | '
      f'{r[\"step\"]:.3f} | {$BATCH / r[\"step\"]:.1f} | {r[\"peak_gib\"]:.2f} ({r[\"memory\"]}) |')
" >> "$TABLE"
        elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
            echo "| $backend | $device | $model | - | stopped after ${limit} s | - | - | - |" >> "$TABLE"
        else
            reason=$(tail -n 1 "$LOG" | cut -c1-90 | tr '|' '/')
            echo "| $backend | $device | $model | - | failed: $reason | - | - | - |" >> "$TABLE"
        fi
    done
done
echo >> "$TABLE"
echo "Measured in ${SECONDS} s (budget ${BUDGET_S} s)." >> "$TABLE"
cat "$TABLE"
