#!/usr/bin/env bash
# Loader throughput: brigade's loader and the peers, side by side, interleaved.
#
# Builds the shared Food-101-shaped photo corpus (real-photo JPEGs, max side 512)
# once, packs it into a raw and a JPEG (q90) store at max side 288, then runs
# ROUNDS rounds of: brigade from the original JPEGs, from the raw store, from the
# JPEG store, PyTorch DataLoader (PIL and tv2 backends), and FFCV / DALI when
# their venvs exist (scripts: /work/shared/baselines/install_peers.sh). Every run
# does RandomResizedCrop(SIZE) + flip into uint8 batches of BATCH with THREADS
# workers. Prints each run, then medians and the target ratios.
#
# usage: scripts/bench-peers.sh [ROUNDS] [THREADS] [BATCHES]
# env:   WORK (default /tmp/brigade-bench), BRIGADE_BIN (skip the cargo build),
#        BRIGADE_PYTHON (PyTorch peer), PEERS (default ~/.cache/brigade-peers),
#        CLASSES / PER_CLASS (corpus size; default 10 x 200 = 2,000 train images)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
ROUNDS="${1:-3}"; THREADS="${2:-2}"; BATCHES="${3:-30}"
BATCH=64; SIZE=224
WORK="${WORK:-/tmp/brigade-bench}"
BASE="${BASELINES:-/work/shared/baselines}"
PY="${BRIGADE_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/brigade/venv-torch-2.11.0/bin/python}"
PEERS="${PEERS:-${XDG_CACHE_HOME:-$HOME/.cache}/brigade-peers}"
CLASSES="${CLASSES:-10}"; PER_CLASS="${PER_CLASS:-200}"
mkdir -p "$WORK"

if [ -z "${BRIGADE_BIN:-}" ]; then
  (cd "$root" && scripts/with-env.sh cargo build --release --bin brigade >&2)
  BRIGADE_BIN="${CARGO_TARGET_DIR:-$root/target}/release/brigade"
fi
corpus="$WORK/corpus"
if [ ! -f "$corpus/meta/train.txt" ]; then
  "$PY" "$BASE/photo_corpus.py" "$corpus" --classes "$CLASSES" --per-class "$PER_CLASS" --test-per-class 20 >&2
fi
[ -f "$WORK/raw288.store" ] || "$BRIGADE_BIN" pack "$corpus" --out "$WORK/raw288.store" --max-side 288 --format raw --quiet >&2
[ -f "$WORK/jpg288.store" ] || "$BRIGADE_BIN" pack "$corpus" --out "$WORK/jpg288.store" --max-side 288 --format jpeg --quality 90 --quiet >&2

common=(--size "$SIZE" --batch "$BATCH" --batches "$BATCHES" --threads "$THREADS")
declare -A cmd
cmd[brigade_files]="$BRIGADE_BIN bench-loader --data $corpus ${common[*]}"
cmd[brigade_raw288]="$BRIGADE_BIN bench-loader --store $WORK/raw288.store ${common[*]}"
cmd[brigade_jpg288]="$BRIGADE_BIN bench-loader --store $WORK/jpg288.store ${common[*]}"
tb=(--workers "$THREADS" --batch "$BATCH" --size "$SIZE" --batches "$BATCHES")
cmd[torch_pil]="$PY $BASE/torch_loader_bench.py $corpus ${tb[*]} --backend pil"
cmd[torch_tv2]="$PY $BASE/torch_loader_bench.py $corpus ${tb[*]} --backend tv2"
order=(brigade_files torch_pil brigade_raw288 torch_tv2 brigade_jpg288)
fb=(--workers "$THREADS" --batch "$BATCH" --batches "$BATCHES" --beton-dir "$WORK")
if [ -x "$PEERS/ffcv/bin/python" ]; then
  cmd[ffcv_raw]="$PEERS/ffcv/bin/python $BASE/ffcv_loader_bench.py $corpus --mode raw ${fb[*]}"
  cmd[ffcv_jpg]="$PEERS/ffcv/bin/python $BASE/ffcv_loader_bench.py $corpus --mode jpg ${fb[*]}"
  order+=(ffcv_raw ffcv_jpg)
fi
if [ -x "$PEERS/dali/bin/python" ]; then
  cmd[dali_cpu]="$PEERS/dali/bin/python $BASE/dali_loader_bench.py $corpus --threads $THREADS --batch $BATCH --batches $BATCHES"
  order+=(dali_cpu)
fi

results="$WORK/results.txt"; : > "$results"
for r in $(seq 1 "$ROUNDS"); do
  for name in "${order[@]}"; do
    out="$(${cmd[$name]} 2>"$WORK/$name.err" | tail -n 1)" || { echo "$name failed: see $WORK/$name.err" >&2; continue; }
    v="${out##*: }"
    echo "round $r  $name  $v img/s"
    echo "$name $v" >> "$results"
  done
done

python3 - "$results" "$THREADS" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, v = line.split()
    runs[k].append(float(v))
med = {k: statistics.median(v) for k, v in runs.items()}
print(f"\nmedians over rounds ({sys.argv[2]} threads):")
for k, v in med.items():
    print(f"  {k:16s} {v:9.1f} img/s   runs {' '.join(f'{x:.0f}' for x in runs[k])}")
# reference figures measured earlier on this machine (not re-measured here)
ref = {"ffcv_raw": 7374.0, "ffcv_jpg": 3565.0, "dali_cpu": 1085.0}
def peer(k):
    return (med[k], "measured") if k in med else (ref[k], "reference, not re-measured")
torch = max(med.get("torch_pil", 0), med.get("torch_tv2", 0))
def line(what, ours, theirs, label, goal):
    if ours in med and theirs:
        r = med[ours] / theirs
        print(f"  {what:38s} {r:6.2f}x  (goal >= {goal}x; peer {label})")
print("ratios:")
if torch:
    line("files vs faster PyTorch", "brigade_files", torch, "measured", 2)
    line("raw store vs faster PyTorch", "brigade_raw288", torch, "measured", 15)
for ours, k, goal in (("brigade_raw288", "ffcv_raw", 1.5), ("brigade_jpg288", "ffcv_jpg", 1.0)):
    v, label = peer(k)
    line(f"{ours} vs {k}", ours, v, label, goal)
PY
