#!/usr/bin/env bash
# cli_golden.sh: recorded trajectories. For every attention kind, both
# positions modes, the three objectives, the recgrela architecture (with
# DropPath; its ablation variants are not recorded), RAM and Blin (two
# RandomPad views and the KL), a short training run (12
# steps) must reproduce exactly the per-step losses (17 digits) and the
# final state hash (done.state_hash: every parameter and Adam moment)
# recorded in tests/golden/trajectories.txt, at P = 1 with a replicated
# item table and at P = 2 with a sharded one. A change that alters any
# result, on purpose or not, fails here; re-record only for an intended
# change of the numerics, and say why in the commit:
#   LINREC_GOLDEN_RECORD=1 bash tests/cli_golden.sh build/linrec .
# The float kernels are built for AVX-512, AVX2 and baseline x86-64 and
# picked by CPU (core/vmath.h); none contracts a multiply-add on its own
# (-ffp-contract=off), so all of them give the recorded bits, and tests/run.sh
# runs this test on each single-ISA build too. Other architectures skip.
# Usage: cli_golden.sh LINREC_BINARY SOURCE_DIR [SHARED_DATA_DIR]
source "$(dirname "$0")/lib_cli.sh"
golden=$src/tests/golden/trajectories.txt
if [ "$(uname -m)" != x86_64 ]; then
  echo "cli_golden: SKIPPED: recorded on x86-64; this is $(uname -m), whose libm may round otherwise"
  exit 77
fi
tiny=(--set data.synthetic.users=200 --set data.synthetic.items=300 --set data.synthetic.mean_len=12
      --set model.d=16 --set model.heads=2 --set model.layers=2 --set model.inner=32
      --set model.max_len=10 --set train.batch_size=48 --set log.every_steps=1
      --set log.progress=off --set train.max_steps=12 --set train.epochs=3 --set train.patience=0
      --set train.negatives=7 --set train.sampler=pop)
cases=("softmax last ce" "linrec last ce" "linrec_code last ce" "linrec_causal last ce"
       "elu1 last ce" "efficient last ce" "softmax all ce" "linrec_causal all ce" "elu1 all ce"
       "softmax all sampled" "linrec_causal all sampled" "elu1 all sampled"
       "linrec_causal all bce" "linrec last sampled" "rela last ce recgrela"
       "rela_causal all ce recgrela" "blin last ce" "softmax all ce ram")
# name np table attention positions objective [arch]: recgrela also sets
# drop_path; the blin kind trains as Blin (two RandomPad views, the KL)
run() {
  local arch=()
  [ -n "${7:-}" ] && arch=(--set model.arch="$7")
  [ "${7:-}" = recgrela ] && arch+=(--set model.drop_path=0.1)
  [ "$4" = blin ] && arch+=(--set train.views=2 --set train.augment=randompad --set train.bkl_weight=2)
  timeout 300 mpirun -np "$2" --oversubscribe --mca mpi_yield_when_idle 1 "$bin" train \
    --config "$src/configs/quickstart.json" "${tiny[@]}" --set dist.item_table="$3" \
    --set model.attention="$4" --set train.positions="$5" --set train.objective="$6" \
    "${arch[@]}" --out "$tmp/$1" > "$tmp/$1.log" 2>&1
}
# the trajectory of a run as one line: case, losses, state hash
line() {
  python3 - "$tmp/$1/metrics.jsonl" "$2" <<'PY'
import json, sys
steps, done = [], None
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "step": steps.append(repr(e["loss"]))
    elif e["event"] == "done": done = e["state_hash"]
assert len(steps) == 12 and done, (len(steps), done)
print("%s | %s | %s" % (sys.argv[2], " ".join(steps), done))
PY
}
out=$tmp/golden.txt
: > "$out"
for c in "${cases[@]}"; do
  set -- $c
  label=$c # "kind positions objective [arch]"
  arch=${4:-}
  name=$1-$2-$3${arch:+-$arch}
  for p in "1 replicated" "2 sharded"; do
    set -- ${c% $arch} $p
    if ! run "$name-$4" "$4" "$5" "$1" "$2" "$3" $arch || ! l=$(line "$name-$4" "$label"); then
      echo "$name at P=$4 ($5 table): FAILED to run"
      tail -n 5 "$tmp/$name-$4.log"
      fail=$((fail + 1))
      continue
    fi
    echo "$l" >> "$out.$4"
    if [ "${LINREC_GOLDEN_RECORD:-}" = 1 ]; then
      [ "$4" = 1 ] && echo "$l" >> "$out"
      continue
    fi
    if grep -qxF "$l" "$golden"; then
      echo "$name at P=$4 ($5 table): losses and state = recorded: PASSED"
      pass=$((pass + 1))
    else
      echo "$name at P=$4 ($5 table): losses and state = recorded: FAILED"
      grep "^$label |" "$golden" | head -1 | cut -c1-200
      echo "$l" | cut -c1-200
      fail=$((fail + 1))
    fi
  done
done
if [ "${LINREC_GOLDEN_RECORD:-}" = 1 ]; then
  if ! cmp -s "$out.1" "$out.2"; then
    echo "cli_golden: P=1 and P=2 differ: not recorded"
    diff "$out.1" "$out.2" | head
    exit 1
  fi
  mkdir -p "$src/tests/golden"
  { echo "# linrec recorded trajectories (tests/cli_golden.sh): case | 12 step losses | state hash"
    cat "$out"; } > "$golden"
  echo "recorded $(grep -vc '^#' "$golden") trajectories in $golden"
  exit 0
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
