#!/usr/bin/env bash
# cli_compat.sh: files written by earlier releases still load
# (tests/fixtures/v1, see its README: a checkpoint with manifest version 2
# and unnamed shard kinds, a model file of version 2):
#   - `ckpt verify` and `ckpt inspect` accept the checkpoint;
#   - resuming from it to step 8, at P = 1 (the item rows re-cut from the
#     two writers' shards) and at P = 2, ends in the recorded state hash;
#   - `eval --model` on the model file prints the recorded metrics.
# The float kernels round alike on every x86-64 CPU (see cli_golden.sh); on
# other architectures the hash checks are skipped (loading is still checked).
# Usage: cli_compat.sh LINREC_BINARY SOURCE_DIR
source "$(dirname "$0")/lib_cli.sh"
fx=$src/tests/fixtures/v1
hash=8406ed0d385f3cba
tiny=(--config "$src/configs/quickstart.json" --set data.synthetic.users=120
      --set data.synthetic.items=60 --set data.synthetic.mean_len=10 --set model.d=8
      --set model.heads=2 --set model.layers=1 --set model.inner=16 --set model.max_len=8
      --set train.batch_size=32 --set train.epochs=2 --set log.every_steps=1
      --set log.progress=off --set train.patience=0 --set train.max_steps=8)
cp -r "$fx/step-00000004" "$tmp/ck"
check "v1 checkpoint: ckpt verify" "$bin" ckpt verify "$tmp/ck" > "$tmp/verify.log" 2>&1 ||
  cat "$tmp/verify.log"
"$bin" ckpt inspect "$tmp/ck" > "$tmp/inspect.log" 2>&1
check "v1 checkpoint: ckpt inspect shows step 4 and the 3 shards" \
  grep -q "step 4" "$tmp/inspect.log" || cat "$tmp/inspect.log"
state_hash() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "done": print(e["state_hash"])' "$1/metrics.jsonl" 2>/dev/null | tail -1; }
for np in 1 2; do
  rm -rf "$tmp/ck$np" && cp -r "$fx/step-00000004" "$tmp/ck$np"
  timeout 300 mpirun -np $np --oversubscribe --mca mpi_yield_when_idle 1 "$bin" train \
    "${tiny[@]}" --resume "$tmp/ck$np" --out "$tmp/r$np" > "$tmp/r$np.log" 2>&1
  rc=$?
  check "v1 checkpoint: resume at P=$np runs (exit 0)" [ $rc = 0 ] || tail -5 "$tmp/r$np.log"
  if [ "$(uname -m)" = x86_64 ]; then
    got=$(state_hash "$tmp/r$np")
    check "v1 checkpoint: resumed at P=$np to step 8, state hash $got = recorded $hash" \
      [ "$got" = $hash ]
  fi
done
"$bin" eval --model "$fx/model.lrm" --split both > "$tmp/eval.out" 2> "$tmp/eval.err"
check "v2 model file: eval --model prints the recorded metrics" \
  cmp -s "$tmp/eval.out" "$fx/eval.expected" || { cat "$tmp/eval.err"; diff "$tmp/eval.out" "$fx/eval.expected"; }
"$bin" eval --model "$fx/model-v3.lrm" --split both > "$tmp/eval3.out" 2> "$tmp/eval3.err"
check "v3 model file (no id maps): eval --model prints the recorded metrics" \
  cmp -s "$tmp/eval3.out" "$fx/eval-v3.expected" || { cat "$tmp/eval3.err"; diff "$tmp/eval3.out" "$fx/eval-v3.expected"; }
"$bin" recommend --model "$fx/model-v3.lrm" --users 1,2 --k 5 > "$tmp/rec3.out" 2> "$tmp/rec3.err"
check "v3 model file (no id maps): recommend prints the recorded top-5" \
  cmp -s "$tmp/rec3.out" "$fx/recommend-v3.expected" || { cat "$tmp/rec3.err"; diff "$tmp/rec3.out" "$fx/recommend-v3.expected"; }
printf '2 10\n2 13\n2 11\n2 12\n5 10\n5 11\n5 12\n5 10\n9 11\n9 13\n9 12\n' > "$tmp/d.txt"
"$bin" prep --set data.format=sasrec --set data.path="$tmp/d.txt" --out "$tmp/d.lrd" > /dev/null 2>&1
"$bin" eval --model pop --set data.format=binary --set data.path="$fx/dataset-v1.lrd" --split test \
  > "$tmp/ev1.out" 2> "$tmp/ev1.err"
"$bin" eval --model pop --set data.format=binary --set data.path="$tmp/d.lrd" --split test \
  > "$tmp/ev2.out" 2> "$tmp/ev2.err"
check "v1 binary dataset: loads, and evaluates as the same data prepared today" \
  cmp -s "$tmp/ev1.out" "$tmp/ev2.out" || { cat "$tmp/ev1.err" "$tmp/ev2.err"; diff "$tmp/ev1.out" "$tmp/ev2.out"; }
echo "$pass passed, $fail failed"
[ $fail = 0 ]
