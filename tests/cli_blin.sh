#!/usr/bin/env bash
# cli_blin.sh: Blin (train.views 2, train.augment randompad, train.bkl_weight)
# trains bitwise reproducibly:
#  1. for the blin kinds with RandomPad and the bidirectional KL (full CE
#     and sampled), without the KL (lambda 0) and two plain views of linrec
#     (no RandomPad), Blin's ReLU FFN (model.ffn=relu) and RandomPad with the
#     `efficient` kind (Blin without its convolution) and with causal
#     `softmax` (Blin-D), the same training at P = 1..4 ranks, other
#     micro-batch sizes, 1 or 2 threads and either item-table layout gives
#     exactly the same per-step losses, evaluations and final state hash;
#  2. a P=2 checkpoint resumed on P=3 ends with the uninterrupted P=1 run's
#     losses, evaluations and state hash;
#  3. the config checks: randompad with a kind without a key mask, two views
#     with positions=all or bce are refused (exit 2).
# Usage: cli_blin.sh LINREC_BINARY SOURCE_DIR [SHARED_DATA_DIR]
source "$(dirname "$0")/lib_cli.sh"
tiny=(--set data.synthetic.users=200 --set data.synthetic.items=300 --set data.synthetic.mean_len=12
      --set model.d=16 --set model.heads=2 --set model.layers=2 --set model.inner=32
      --set model.max_len=10 --set train.batch_size=48 --set log.every_steps=1
      --set log.progress=off --set train.max_steps=12 --set train.epochs=3 --set train.patience=0
      --set train.positions=last --set train.views=2)
placements=("p1 1 1 0 auto" "p2 2 1 3 sharded" "p3 3 1 5 replicated" "p1t2 1 2 7 sharded"
            "p4 4 1 2 auto")
# a case: kind augment objective lambda
cases=("blin randompad ce 2" "blin_left randompad sampled 2" "blin randompad ce 0"
       "linrec none ce 2" "blin randompad ce 2 relu" "efficient randompad ce 2"
       "softmax randompad ce 2")
if [ -n "${LINREC_SANITIZED:-}" ]; then
  placements=("p1 1 1 0 auto" "p2 2 1 3 sharded")
  cases=("blin randompad ce 2" "blin_left randompad sampled 2")
fi
echo "-- 1. P = 1..4, micro-batches, threads, table layouts"
for c in "${cases[@]}"; do
  set -- $c
  extra=(--set model.attention=$1 --set train.augment=$2 --set train.objective=$3
         --set train.bkl_weight=$4 --set train.negatives=7 --set train.sampler=pop
         --set model.ffn=${5:-gelu})
  name=$1-$2-$3-$4${5:+-$5}
  across_placements "$name" final -- "${extra[@]}"
done

echo "-- 2. resume a P=2 checkpoint on P=3"
ck=(--set model.attention=blin --set train.augment=randompad --set train.checkpoint.every_steps=6)
resume() {
  run whole 1 1 0 auto "${ck[@]}" || return 1
  run rs 2 1 3 sharded "${ck[@]}" --set train.max_steps=6 || return 1
  run rs 3 1 3 sharded "${ck[@]}" --resume latest || { tail -n 3 "$tmp/rs.log"; return 1; }
  local a b
  a=$(summary whole final) && b=$(summary rs final) || return 1
  [ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") | head -n 6; return 1; }
}
check "blin: a P=2 checkpoint resumed on P=3 = the uninterrupted P=1 run (losses, evaluations, state hash)" resume

echo "-- 3. config checks"
refused() { # expected-message keys...
  local want=$1; shift
  "$bin" train --config "$src/configs/quickstart.json" "${tiny[@]}" "$@" --out "$tmp/refused" \
    > "$tmp/refused.log" 2>&1
  local rc=$?
  [ "$rc" = 2 ] && grep -q "$want" "$tmp/refused.log" || { echo "rc $rc"; tail -n 2 "$tmp/refused.log"; return 1; }
}
check "randompad with linrec (no key mask) is refused" \
  refused "needs an attention kind that takes a key mask" --set train.augment=randompad
check "two views with positions=all are refused" \
  refused "train.views" --set model.attention=softmax --set train.positions=all
check "two views with bce are refused" \
  refused "not bce" --set train.objective=bce
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
