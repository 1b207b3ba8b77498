#!/usr/bin/env bash
# Search benchmark: from the First Fit seed, offline, evolve binpack with each
# selection strategy and several seeds under an evaluation budget, then score
# each run's best version on the VALIDATION split (never used for search
# decisions except the no-regression check). Prints a markdown table.
#
#   benchmarks/search/run.sh [ATTEMPTS] [SEEDS] [STRATEGIES...]
#   e.g. benchmarks/search/run.sh 500 5 dgm greedy random
#   EVOLVE_ARGS="--lambda 100" benchmarks/search/run.sh 150 5 dgm   # extra `dgm evolve` flags
set -euo pipefail
cd "$(dirname "$0")/../.."
ATTEMPTS=${1:-500}; SEEDS=${2:-5}; shift 2 || true
STRATEGIES=("${@:-dgm greedy random}")
[ $# -eq 0 ] && STRATEGIES=(dgm greedy random)
DGM=${DGM:-${CARGO_TARGET_DIR:-target}/release/dgm}
OUT=$(mktemp -d /tmp/dgm-search.XXXXXX)
echo "| selection | seed | attempts | promoted | best train excess % | best validation excess % | First Fit val % | Best Fit val % |"
echo "|---|---|---|---|---|---|---|---|"
for strategy in "${STRATEGIES[@]}"; do
  for seed in $(seq 1 "$SEEDS"); do
    store="sqlite://$OUT/$strategy-$seed.db"
    "$DGM" --store "$store" evolve examples/binpack --selection "$strategy" --seed "$seed" \
      --max-attempts "$ATTEMPTS" --generations 100000 --population 4 ${EVOLVE_ARGS:-} --json > "$OUT/$strategy-$seed.json" 2>"$OUT/$strategy-$seed.err" \
      || { echo "| $strategy | $seed | failed: $(tail -1 "$OUT/$strategy-$seed.err") |"; continue; }
    "$DGM" --store "$store" bench binpack@best --split validation --json > "$OUT/$strategy-$seed.val.json" 2>>"$OUT/$strategy-$seed.err" \
      || { echo "| $strategy | $seed | validation failed: $(tail -1 "$OUT/$strategy-$seed.err") |"; continue; }
    python3 - "$OUT/$strategy-$seed.json" "$OUT/$strategy-$seed.val.json" "$strategy" "$seed" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))[0]
val = json.load(open(sys.argv[2]))[-1]["metrics"]
print(f"| {sys.argv[3]} | {sys.argv[4]} | {run['attempts']} | {run['promoted']} | "
      f"{run['best_metrics'].get('excess_pct', float('nan')):.2f} | {val['excess_pct']:.2f} | "
      f"{val['first_fit_excess_pct']:.2f} | {val['best_fit_excess_pct']:.2f} |")
PY
  done
done
