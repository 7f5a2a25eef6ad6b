#!/usr/bin/env bash
# One prepared check for a session that has a GPU machine (about 6-8 minutes on an H200).
#
#   bash benchmarks/gpu_check.sh [REPORT]          # REPORT default: $OUT/gpu_check.txt, else ./gpu_check.txt
#   DEVICE=cpu bash benchmarks/gpu_check.sh        # the same steps on the CPU at tiny sizes (proves the script)
#   bash benchmarks/gpu_check.sh --prepare         # on the development machine, before: see "Preparing" below
#
# Steps, in this order, each under its own timeout and all under one deadline (DEADLINE_S, default
# 460 s of step time; a step that no longer fits is reported as skipped), every table and summary
# written to REPORT:
#   1. pytest with IMDN_TEST_DEVICE=$DEVICE (the device-aware tests run on the GPU);
#   2. benchmarks/benchmark.py on $DEVICE: fp32 (channels-last fast path vs the plain NCHW reference),
#      fp16 and bf16 autocast, and torch.compile;
#   3. training: `basicsr train` for ITERS iterations (default 200; cpu: 4) on demo data generated
#      here (scripts/make_demo_data.py, no download), without AMP and with train: {amp: bf16} and
#      {amp: fp16} (fp16: CUDA only), channels_last on; table: s/iter, final loss, validation PSNR;
#   4. the host CPU's bf16 plan: tests/inference/test_fused_cpu.py (its native-kernel test runs
#      where oneDNN has bf16 convolutions, e.g. with AMX) and benchmarks/check_bf16.py (Set5 PSNR of
#      the bf16 plan vs fp32 with the authors' weights; needs the reference data);
#   5. benchmarks/benchmark.py on the host CPU with --variants all (fp32 plan, bf16 plan, ONNX
#      Runtime, OpenVINO where installed).
# The exit status is 1 if a step failed or timed out (the report says which), else 0.
#
# Preparing (the GPU machine is bare and offline: it has torch, opencv, scikit-image, onnxruntime,
# but not basicsr, lmdb or this plugin, and the reference data does not travel):
#   bash benchmarks/gpu_check.sh --prepare   # on the development machine: wheels of basicsr, lmdb and
#                                         # this plugin into .whl/, the reference data into .ref/
#                                         # (both git-excluded; never committed)
# then run on the GPU machine with carry [".whl", ".ref"]:
#   bash benchmarks/gpu_check.sh "$OUT/gpu_check.txt"
# Environment: DEVICE (cuda|cpu), PYTHON (default python3), WHEELS (default .whl), REFERENCE
# (default .ref if present, else ../shared/reference), ITERS, DEADLINE_S, TIMEOUT_SCALE (multiplies
# every step's timeout; cpu default 5), PYTEST_FILES / PYTEST_K (pytest's files and -k; cuda
# default: the whole suite).
set -uo pipefail   # not -e: a failing step is recorded and the next one still runs

cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || PY=python
DEVICE=${DEVICE:-cuda}
WHEELS=${WHEELS:-.whl}

if [[ "${1:-}" == "--prepare" ]]; then
    set -euo pipefail
    mkdir -p .whl .ref
    exclude=$(git rev-parse --git-path info/exclude)   # (also in a worktree, where .git is a file)
    mkdir -p "$(dirname "$exclude")"
    for d in /.whl/ /.ref/; do grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >> "$exclude"; done
    "$PY" -m pip wheel -q --no-deps -w .whl . basicsr==1.4.2
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl lmdb
    ref=${REFERENCE:-../shared/reference}
    if [[ -d "$ref/checkpoints" ]]; then cp -r "$ref/checkpoints" "$ref/Set5" .ref/; fi
    du -sh .whl .ref
    exit 0
fi

if [[ -n "${1:-}" ]]; then REPORT=$1; elif [[ -n "${OUT:-}" ]]; then REPORT=$OUT/gpu_check.txt; else REPORT=$REPO/gpu_check.txt; fi
mkdir -p "$(dirname "$REPORT")"
REPORT=$(cd "$(dirname "$REPORT")" && pwd)/$(basename "$REPORT")
: > "$REPORT"
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DEADLINE_S=${DEADLINE_S:-460}
START=$SECONDS
FAILED=()
SUMMARY=()

say() { printf '%s\n' "$*" | tee -a "$REPORT"; }

# step NAME TIMEOUT_S COMMAND...: run with a timeout, output into the report, status into the summary.
# (A shell function as COMMAND must be exported: export -f NAME; it then runs as bash -c NAME.)
step() {
    local name=$1 limit=$(( $2 * TIMEOUT_SCALE )); shift 2
    if declare -F "$1" > /dev/null; then set -- bash -c "$1"; fi
    local left=$(( DEADLINE_S - (SECONDS - START) ))
    (( limit > left )) && limit=$left
    say ""
    say "## $name"
    if (( limit < 20 )); then
        say "SKIPPED: the deadline (DEADLINE_S=$DEADLINE_S) leaves ${left} s"
        SUMMARY+=("$name: skipped (deadline)")
        return 0
    fi
    local t0=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" >> "$REPORT" 2>&1 || rc=$?
    local took=$(( SECONDS - t0 ))
    if (( rc == 0 )); then
        SUMMARY+=("$name: ok (${took} s)")
    elif (( rc == 124 || rc == 137 )); then
        say "TIMEOUT after ${limit} s"
        SUMMARY+=("$name: TIMEOUT (${limit} s)"); FAILED+=("$name")
    else
        say "FAILED: exit status $rc"
        SUMMARY+=("$name: FAILED (exit $rc, ${took} s)"); FAILED+=("$name")
    fi
}

# ------------------------------------------------------------------ environment
if [[ -d "$WHEELS" ]] && compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS"/*.whl \
        >> "$REPORT" 2>&1 || say "warning: installing $WHEELS/*.whl failed"
    export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ -z "${REFERENCE:-}" ]]; then
    if [[ -d .ref/checkpoints ]]; then REFERENCE=$REPO/.ref; else REFERENCE=$(cd .. && pwd)/shared/reference; fi
fi
export PYTHONUNBUFFERED=1
# The tests look for ../shared/reference; on a machine without it (the GPU machine), a link to REFERENCE.
if [[ -d "$REFERENCE/checkpoints" && ! -d ../shared/reference ]]; then
    mkdir -p ../shared && ln -s "$REFERENCE" ../shared/reference 2>/dev/null || true
fi

if [[ "$DEVICE" == cpu ]]; then
    ITERS=${ITERS:-4}; GT=48; BATCH=2; CASES=x2; BENCH=(--quick --repeats 2 --processes 1 --no-memory --no-set5)
    PYTEST_FILES=${PYTEST_FILES-tests/inference/test_fused_cpu.py}; PYTEST_K=${PYTEST_K-auto or path or cast}
    AMPS="none bf16"; TIMEOUT_SCALE=${TIMEOUT_SCALE:-5}
else
    ITERS=${ITERS:-200}; GT=192; BATCH=16; CASES=x2,x4,as-whole; BENCH=(--repeats 10)
    PYTEST_FILES=${PYTEST_FILES-}; PYTEST_K=${PYTEST_K-}
    AMPS="none bf16 fp16"; TIMEOUT_SCALE=${TIMEOUT_SCALE:-1}
fi
export PY WORK ITERS GT BATCH DEVICE AMPS

say "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ), DEVICE=$DEVICE, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say "CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores;" \
    "flags: $(grep -o -w 'avx2\|avx512[a-z_0-9]*\|amx[a-z_0-9]*\|avx_vnni\|avx_ne_convert' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ')"
command -v nvidia-smi >/dev/null && say "GPU: $(nvidia-smi -L 2>/dev/null | head -2 | tr '\n' ' ')"
"$PY" - >> "$REPORT" 2>&1 <<'EOF' || say "warning: python environment check failed"
import torch, importlib.util as u
print(f"python {__import__('sys').version.split()[0]}, torch {torch.__version__}, cuda {torch.version.cuda}, "
      f"cuda available {torch.cuda.is_available()}, cpu capability {torch.backends.cpu.get_cpu_capability()}")
for m in ("basicsr", "lmdb", "cv2", "skimage", "onnxruntime", "openvino", "imdn_plugin"):
    print(f"  {m}: {'yes' if u.find_spec(m) else 'MISSING'}")
from imdn_plugin.machine import amx_detected, mkldnn_bf16_native
print(f"  oneDNN bf16 convolutions: {mkldnn_bf16_native()}; AMX: {amx_detected()}")
EOF
say "reference data: $REFERENCE ($( [[ -d $REFERENCE/checkpoints ]] && echo present || echo ABSENT: Set5 rows and tests skip))"

# ------------------------------------------------------------------ 1. tests
PYTEST=(-q -p no:cacheprovider -rs)
# shellcheck disable=SC2206
[[ -n "$PYTEST_FILES" ]] && PYTEST+=($PYTEST_FILES)
[[ -n "$PYTEST_K" ]] && PYTEST+=(-k "$PYTEST_K")
step "1. pytest (IMDN_TEST_DEVICE=$DEVICE ${PYTEST[*]:3})" 240 env IMDN_TEST_DEVICE="$DEVICE" "$PY" -m pytest "${PYTEST[@]}"

# ------------------------------------------------------------------ 2. inference benchmark on DEVICE
BENCH_COMMON=(benchmarks/benchmark.py --device "$DEVICE" --cases "$CASES" --reference "$REFERENCE"
              --weights-dir "$REFERENCE/checkpoints" "${BENCH[@]}")
step "2a. benchmark $DEVICE fp32 (fast path channels-last vs NCHW reference)" 90 "$PY" "${BENCH_COMMON[@]}" --precision fp32
if [[ "$DEVICE" == cuda ]]; then
    step "2b. benchmark cuda fp16 (autocast)" 90 "$PY" "${BENCH_COMMON[@]}" --precision fp16
fi
step "2c. benchmark $DEVICE bf16 (cuda: autocast; cpu: the bf16 plan)" 90 "$PY" "${BENCH_COMMON[@]}" --precision bf16
if [[ "$DEVICE" == cuda || -n "${CPU_COMPILE:-}" ]]; then
    step "2d. benchmark $DEVICE fp32 + torch.compile" 200 "$PY" "${BENCH_COMMON[@]}" --precision fp32 --compile --no-memory --no-set5
fi

# ------------------------------------------------------------------ 3. training with and without AMP
train_all() {
    "$PY" scripts/make_demo_data.py --out "$WORK/demo" --quiet || return 1
    local amp rc=0
    for amp in $AMPS; do
        "$PY" - "$WORK" "$amp" "$ITERS" "$GT" "$BATCH" "$DEVICE" <<'EOF' || rc=1
import sys, yaml
work, amp, iters, gt, batch, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
with open("options/train_IMDN_x4_demo.yml") as f:
    opt = yaml.safe_load(f)
opt["name"] = f"gpu_check_amp_{amp}"
opt["num_gpu"] = 1 if device == "cuda" else 0
for key in ("dataroot_gt", "dataroot_lq"):
    for ds in ("train", "val"):
        opt["datasets"][ds][key] = opt["datasets"][ds][key].replace("datasets/demo", f"{work}/demo")
opt["datasets"]["train"].update(gt_size=gt, batch_size_per_gpu=batch, num_worker_per_gpu=4 if device == "cuda" else 0)
opt["train"].update(total_iter=iters, channels_last=True, amp=None if amp == "none" else amp)
opt["train"]["scheduler"]["milestones"] = [10 * iters]
opt["val"]["val_freq"] = iters
opt["logger"].update(print_freq=max(1, iters // 10), save_checkpoint_freq=10 * iters, use_tb_logger=False)
with open(f"{work}/train_{amp}.yml", "w") as f:
    yaml.safe_dump(opt, f)
EOF
        (cd "$WORK" && "$PY" -c "import sys, imdn_plugin; imdn_plugin.register(); from imdn_plugin.cli import main; sys.exit(main(['train', '-opt', 'train_$amp.yml']))" \
            > "$WORK/train_$amp.log" 2>&1) || { rc=1; echo "training with amp=$amp FAILED:"; tail -15 "$WORK/train_$amp.log"; }
    done
    # shellcheck disable=SC2086
    "$PY" - "$WORK" $AMPS <<'EOF'
import glob, re, statistics, sys
work, amps = sys.argv[1], sys.argv[2:]
print("| train: amp | iterations | s/iter (median of logged) | last l_pix | validation PSNR (Y) |")
print("|---|---:|---:|---:|---:|")
for amp in amps:
    logs = sorted(glob.glob(f"{work}/experiments/gpu_check_amp_{amp}*/train_*.log"))
    text = open(logs[-1]).read() if logs else ""
    times = [float(t) for t in re.findall(r"time \(data\): ([0-9.]+)", text)]
    iters = re.findall(r"iter:\s*([0-9,]*[0-9])", text)
    loss = re.findall(r"l_pix: ([0-9.e+-]+)", text)
    psnr = re.findall(r"# psnr: ([0-9.]+)", text)
    print(f"| {amp} | {iters[-1] if iters else '–'} | {statistics.median(times) if times else float('nan'):.4f} | "
          f"{loss[-1] if loss else '–'} | {psnr[-1] if psnr else '– (no log: failed)'} |")
EOF
    return $rc
}
export -f train_all
step "3. training $ITERS iterations, amp: $AMPS (IMDN x4, batch $BATCH, HR $GT, channels_last)" 200 train_all

# ------------------------------------------------------------------ 4./5. the host CPU's bf16 plan
if [[ "$DEVICE" == cuda ]]; then
    step "4a. host CPU: bf16 plan tests" 90 env IMDN_TEST_DEVICE=cpu "$PY" -m pytest -q -p no:cacheprovider tests/inference/test_fused_cpu.py -rs
    if [[ -d "$REFERENCE/Set5" ]]; then
        step "4b. host CPU: Set5 PSNR, bf16 plan vs fp32" 120 "$PY" benchmarks/check_bf16.py --reference "$REFERENCE" --variants none,default,default+LR_conv
    fi
    step "5. host CPU benchmark: fp32 plan, bf16 plan, ONNX Runtime, OpenVINO" 150 \
        "$PY" benchmarks/benchmark.py --cases x4 --variants all --processes 2 --repeats 4 --no-memory \
        --reference "$REFERENCE" --weights-dir "$REFERENCE/checkpoints"
else
    step "4. CPU: Set5 x4 PSNR, bf16 plan vs fp32" 150 "$PY" benchmarks/check_bf16.py --reference "$REFERENCE" --scales 4 --variants default
fi

# ------------------------------------------------------------------ summary
say ""
say "## summary ($(( SECONDS - START )) s)"
for line in "${SUMMARY[@]}"; do say "- $line"; done
if (( ${#FAILED[@]} )); then
    say "FAILED: ${FAILED[*]}"
    exit 1
fi
say "all steps ok"
