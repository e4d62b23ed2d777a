#!/usr/bin/env bash
# The GPU benchmarks as one command on a lent GPU machine that reaches no network: puts the carried wheels first on
# PYTHONPATH, checks that the CLI imports, then runs each task given and copies its results into $OUT.
#
#   bash benchmarks/gpu_run.sh [--dry-run | --tiny] [--budget SECONDS] [--work DIR] [TASK ...]
#   bash benchmarks/gpu_run.sh --fetch-wheels        # on a machine with PyPI access, before the GPU session
#
# TASK is pipeline:ARCH (benchmarks/gpu_pipeline.py) or 7b:ARCH (benchmarks/gpu_7b.py), ARCH llava-1.5-7b or
# qwen2.5-vl-7b; default: pipeline:llava-1.5-7b. Every task runs with --save; $OUT receives gpu_pipeline.json and
# gpu_7b.json (the files of benchmarks/results), gpu_pipeline.work.json (the step report, also when a task was cut
# short) and run.log. Each task is stopped when the budget (default 570 s, inside one device call's 600 s) runs out,
# so the copies are made whatever happens. Copy $OUT's gpu_*.json into benchmarks/results/ before the next call: a
# saved file gathers architectures measured one call at a time on the same kind of GPU.
#
# Wheels: the GPU image has torch, transformers 5.17, peft and pandas but no duckdb; --fetch-wheels downloads the
# pinned duckdb, transformers, peft and regex for CPython 3.12 on x86-64 Linux into .whl/ (git-ignored, ~39 MB),
# which the device call carries (`carry: [".whl"]`; $HIPP_WHEELS names another folder). --dry-run prints what
# would run and checks the arguments; --tiny runs it all on the CPU with the scripts' --tiny stand-ins and saves
# nothing to benchmarks/results (a check of this script's logic; its numbers mean nothing).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEEL_DIR=${HIPP_WHEELS:-$REPO/.whl}
WHEELS=(duckdb==2.0.0 transformers==5.23.0 peft==0.21.2 regex==2026.11.19)
ARCHS=(llava-1.5-7b qwen2.5-vl-7b)
PY=${PYTHON:-python3}
DRY=0
TINY=0
FETCH=0
BUDGET=570
WORK="$REPO/.gpu_work"
TASKS=()

die() { echo "gpu_run.sh: $*" >&2; exit 2; }

while (($#)); do
    case "$1" in
        --dry-run) DRY=1 ;;
        --tiny) TINY=1 ;;
        --fetch-wheels) FETCH=1 ;;
        --budget) shift; [[ ${1:-} =~ ^[0-9]+$ ]] || die "--budget takes whole seconds, got '${1:-}'"; BUDGET=$1 ;;
        --work) shift; [[ -n ${1:-} ]] || die "--work takes a folder"; WORK=$1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        pipeline:*|7b:*) TASKS+=("$1") ;;
        *) die "unknown argument '$1'; tasks are pipeline:ARCH or 7b:ARCH with ARCH one of ${ARCHS[*]}" ;;
    esac
    shift
done
((${#TASKS[@]})) || TASKS=(pipeline:llava-1.5-7b)
for task in "${TASKS[@]}"; do
    arch=${task#*:}
    [[ " ${ARCHS[*]} " == *" $arch "* ]] || die "unknown architecture in '$task'; use one of ${ARCHS[*]}"
done

say() { echo "[gpu_run $(date +%H:%M:%S)] $*"; }
run() {  # a command, shown first; only shown under --dry-run
    echo "+ $*" >&2
    ((DRY)) || "$@"
}
keep() {  # copy a result file into $OUT if the task got as far as writing it
    echo "+ cp $1 $OUT/$2"
    ((DRY)) || { [[ -f $1 ]] && cp "$1" "$OUT/$2"; } || say "no $1 to keep"
}

if ((FETCH)); then
    run "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEEL_DIR" "${WHEELS[@]}"
    exit $?
fi

START=$SECONDS
OUT=${OUT:-$WORK/out}  # the device machine sets $OUT; elsewhere the results stay under --work
SITE="$WORK/site"
run mkdir -p "$OUT" "$WORK"
LOG="$OUT/run.log"
((DRY)) && LOG=/dev/null
exec > >(tee -a "$LOG") 2>&1

shopt -s nullglob
wheels=("$WHEEL_DIR"/*.whl)
if ((${#wheels[@]})); then
    say "installing ${#wheels[@]} carried wheels into $SITE"
    run "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" \
        || die "installing the wheels of $WHEEL_DIR failed"
    export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
    say "no wheels in $WHEEL_DIR: using the installed packages (run --fetch-wheels where PyPI is reachable)"
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
export HIPP_CACHE="$WORK/cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

say "checking the machine and that the CLI imports"
if command -v nvidia-smi >/dev/null || ((DRY)); then
    run nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
else
    say "no nvidia-smi on this machine"
fi
run df -h "$WORK"
run "$PY" -c "import duckdb, peft, torch, transformers, hipp_core.cli as c; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), '| transformers', transformers.__version__, '| duckdb', duckdb.__version__, \
'| peft', peft.__version__)" || die "the CLI does not import here (see above); nothing was run"
run "$PY" -m hipp_core.cli eval --help >/dev/null || die "the CLI cannot build its commands here (typer?); nothing was run"

status=0
for task in "${TASKS[@]}"; do
    left=$((BUDGET - (SECONDS - START)))
    if ((left < 30)); then
        say "budget spent: $task not started"
        status=1
        continue
    fi
    kind=${task%%:*}
    arch=${task#*:}
    say "$task (at most ${left} s)"
    limit=(timeout --kill-after=15 "$left" "$PY")
    if [[ $kind == pipeline ]]; then
        saving=(--save)
        ((TINY)) && saving=(--tiny)
        run "${limit[@]}" "$REPO/benchmarks/gpu_pipeline.py" --archs "$arch" --out "$WORK/pipeline" "${saving[@]}" \
            >/dev/null || status=1
        keep "$WORK/pipeline/gpu_pipeline.json" gpu_pipeline.work.json
        ((TINY)) || keep "$REPO/benchmarks/results/gpu_pipeline.json" gpu_pipeline.json
    else
        saving=(--save)
        ((TINY)) && saving=(--tiny --out "$OUT/gpu_7b.json")
        run "${limit[@]}" "$REPO/benchmarks/gpu_7b.py" --archs "$arch" "${saving[@]}" >/dev/null || status=1
        ((TINY)) || keep "$REPO/benchmarks/results/gpu_7b.json" gpu_7b.json
    fi
done
say "done in $((SECONDS - START)) s, exit $status; results in $OUT"
exit $status
