#!/usr/bin/env bash
# bench_dist.sh: figures of the distributed design (not a ctest).
#   bytes    bytes per step by kind (lookup, push, loss, dense, table allreduce)
#            for catalogs of 10^4, 10^5, 10^6 items at the same batch, P=2,
#            sharded table: loss and dense traffic must not grow with the catalog.
#   rss      peak RSS per rank for a 10^7-item, d=64 catalog, sampled objective,
#            at P = 1, 2, 4: the table's share shrinks as 1/P.
#   speed    sequences/s at P=1 and P=2 (one BLAS thread per rank) on a config
#            (default configs/ml-1m-causal.json) at batch 128, and the P=2/P=1 ratio.
# Usage: bench_dist.sh LINREC_BINARY SOURCE_DIR {bytes|rss|speed} [CONFIG]
set -eu
bin=$1
src=$2
what=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
mpi() { local np=$1; shift; mpirun -np "$np" --oversubscribe --mca mpi_yield_when_idle 1 "$@"; }
field() { python3 -c "import json,sys; e=[json.loads(l) for l in open(sys.argv[1]) if '\"event\":\"epoch\"' in l][-1]; print(e$2)" "$1"; }

case $what in
bytes)
  printf '%-9s %12s %12s %12s %12s %12s\n' items lookup_B push_B loss_B dense_B table_ar_B
  for items in 10000 100000 1000000; do
    mpi 2 "$bin" train --config "$src/configs/quickstart.json" --set data.synthetic.items=$items \
      --set data.synthetic.users=2000 --set data.synthetic.mean_len=20 --set model.d=32 \
      --set model.max_len=20 --set train.batch_size=256 --set train.max_steps=6 \
      --set train.epochs=1 --set dist.item_table=sharded --set log.progress=off \
      --set train.patience=0 --set eval.mode=uni100 --out "$tmp/b$items" > "$tmp/b$items.log" 2>&1
    m=$tmp/b$items/metrics.jsonl
    printf '%-9s %12.0f %12.0f %12.0f %12.0f %12.0f\n' $items \
      "$(field "$m" "['comm_per_step']['lookup_bytes']")" "$(field "$m" "['comm_per_step']['push_bytes']")" \
      "$(field "$m" "['comm_per_step']['loss_bytes']")" "$(field "$m" "['comm_per_step']['dense_bytes']")" \
      "$(field "$m" "['comm_per_step']['table_allreduce_bytes']")"
  done ;;
rss)
  # table state per rank: weights, gradient, two Adam moments and the
  # best-model copy, 5 x (10^7 + 1) x 64 floats / P
  printf '%-4s %14s %16s %12s\n' P peak_rss_MiB table_state_MiB rest_MiB
  for np in 1 2 4; do
    mpi "$np" /usr/bin/time -f "rss_kib %M" "$bin" train --config "$src/configs/quickstart.json" \
      --set data.synthetic.items=10000000 --set data.synthetic.users=2000 \
      --set data.synthetic.mean_len=20 --set model.d=64 --set model.max_len=20 \
      --set train.objective=sampled --set train.negatives=64 --set dist.item_table=sharded \
      --set train.batch_size=128 --set train.max_steps=3 --set train.epochs=1 \
      --set log.progress=off --set eval.mode=uni100 --out "$tmp/r$np" > "$tmp/r$np.log" 2>&1
    grep -o 'rss_kib [0-9]*' "$tmp/r$np.log" | awk -v np=$np '{if ($2 > m) m = $2}
      END {t = 5 * 10000001 * 64 * 4 / np / 1048576; printf "%-4s %14.0f %16.0f %12.0f\n", np, m / 1024, t, m / 1024 - t}' 
  done ;;
speed)
  cfg=${4:-$src/configs/ml-1m-causal.json}
  for np in 1 2 1 2; do # A B A B
    mpi "$np" "$bin" train --config "$cfg" --set data.path="${ML1M:-$src/../shared/data/ml-1m/ml-1m.txt.gz}" \
      --set train.epochs=1 --set log.progress=off \
      --set train.patience=0 --set train.batch_size=128 --out "$tmp/s$np" > "$tmp/s$np.log" 2>&1
    echo "P=$np seq_per_s $(field "$tmp/s$np/metrics.jsonl" "['seq_per_s']")"
  done | tee "$tmp/speed.txt"
  python3 - "$tmp/speed.txt" <<'PY'
import sys
v = {}
for l in open(sys.argv[1]):
    p, _, s = l.split(); v.setdefault(p, []).append(float(s))
a, b = max(v["P=1"]), max(v["P=2"])
print("P=2/P=1 = %.2f (best of 2 each)" % (b / a))
PY
  ;;
*) echo "usage: $0 LINREC SRC {bytes|rss|speed} [CONFIG]" >&2; exit 2 ;;
esac
