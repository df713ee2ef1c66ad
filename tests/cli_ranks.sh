#!/usr/bin/env bash
# cli_ranks.sh: training is bitwise reproducible. For every attention kind
# and objective, the same training (same global batch) run at P = 1, 2, 3
# and 4 ranks, with other micro-batch sizes, 1 or 2 threads per rank and
# either item-table layout, gives exactly the same per-step losses (printed
# to 17 digits), the same validation and test metrics, and the same final
# state (done.state_hash: parameters and Adam moments, dense and every item
# row); so does the recgrela architecture (with DropPath). Nothing is
# compared with a tolerance.
# The sanitizer build (LINREC_SANITIZED=1) runs one case per kind and three
# of the five placements.
# Usage: cli_ranks.sh LINREC_BINARY SOURCE_DIR SHARED_DATA_DIR
source "$(dirname "$0")/lib_cli.sh"
# 300 items: 5 blocks of the loss's item grid, so a sharded table is cut
# at P = 2..4 into unequal whole-block slices
tiny=(--set data.synthetic.users=200 --set data.synthetic.items=300 --set data.synthetic.mean_len=12
      --set model.d=16 --set model.heads=2 --set model.layers=2 --set model.inner=32
      --set model.max_len=10 --set train.batch_size=48 --set log.every_steps=1
      --set log.progress=off --set train.max_steps=12 --set train.epochs=3 --set train.patience=0)
# placement: name np threads micro_batch table
placements=("p1 1 1 0 auto" "p2 2 1 3 sharded" "p3 3 1 5 replicated" "p1t2 1 2 7 sharded"
            "p4 4 1 2 auto")
# A case is "kind positions objective [arch]" (positions allw: all with
# train.windows=all, every window of a user an example): arch recgrela also sets
# model.drop_path (its per-sequence keys are part of what must not depend
# on the placement).
cases=("linrec last ce" "linrec_code last ce" "efficient last ce" "softmax last ce"
       "linrec_causal all ce" "elu1 all ce" "softmax all sampled" "linrec_causal all sampled"
       "elu1 all bce" "linrec_causal all bce" "rela last ce recgrela" "rela_causal all ce recgrela"
       "rela_causal all sampled recgrela" "linrec_causal allw ce")
if [ -n "${LINREC_SANITIZED:-}" ]; then
  placements=("p1 1 1 0 auto" "p2 2 1 3 sharded" "p1t2 1 2 7 sharded")
  cases=("linrec last ce" "linrec_code last ce" "efficient last ce" "softmax all sampled"
         "linrec_causal all ce" "elu1 all bce" "rela_causal all ce recgrela")
fi
for c in "${cases[@]}"; do
  set -- $c
  extra=(--set model.attention=$1 --set train.positions=${2%w} --set train.objective=$3
         --set train.negatives=7 --set train.sampler=pop)
  [ "$2" = allw ] && extra+=(--set train.windows=all)
  [ "$3" != ce ] && extra+=(--set train.clip_norm=0.5 --set train.weight_decay=0.01)
  [ -n "${4:-}" ] && extra+=(--set model.arch="$4" --set model.drop_path=0.1)
  name=$1-$2-$3${4:+-$4}
  across_placements "$name" -- "${extra[@]}"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
