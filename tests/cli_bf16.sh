#!/usr/bin/env bash
# cli_bf16.sh: train.precision=bf16 (the model's products with bf16 operands,
# core/gemm_bf16.h) keeps linrec's guarantees:
#  1. bitwise the same training at P = 1 and 3, other micro-batches, 2
#     threads and either table layout (losses to 17 digits, evaluations, state hash), for the LinRec
#     encoder (linrec_causal, all positions, full CE), RecGRELA (rela_causal,
#     DropPath) and sampled softmax (softmax, last position);
#  2. a P=2 bf16 checkpoint resumed on P=3 ends with the uninterrupted bf16
#     run's losses and state; an fp32 checkpoint resumes in bf16 (and the
#     result differs from fp32's: the products did change);
#  3. the bf16 trajectory is not fp32's but within 1% of it per step over the
#     12 steps (the products' bf16 rounding, 2^-8 relative per operand);
#  4. a CPU without AVX512-BF16 (LINREC_NO_BF16=1): a message on stderr and
#     exactly the fp32 training;
#  5. eval and recommend run with the key.
# Skips (77) when this CPU has no AVX512-BF16.
# Usage: cli_bf16.sh LINREC_BINARY SOURCE_DIR
source "$(dirname "$0")/lib_cli.sh"
grep -q avx512_bf16 /proc/cpuinfo || { echo "no AVX512-BF16 on this CPU: skipped"; exit 77; }
tiny=(--set data.synthetic.users=200 --set data.synthetic.items=300 --set data.synthetic.mean_len=12
      --set model.d=16 --set model.heads=2 --set model.layers=2 --set model.inner=32
      --set model.max_len=10 --set train.batch_size=48 --set log.every_steps=1
      --set log.progress=off --set train.max_steps=12 --set train.epochs=3 --set train.patience=0)
placements=("p1 1 1 0 auto" "p3 3 1 5 sharded" "p1t2 1 2 7 replicated")
# a case: kind positions objective arch
cases=("linrec_causal all ce sasrec" "rela_causal all ce recgrela" "softmax last sampled sasrec")
if [ -n "${LINREC_SANITIZED:-}" ]; then
  placements=("p1 1 1 0 auto" "p2 2 1 3 sharded")
  cases=("linrec_causal all ce sasrec")
fi
echo "-- 1. P = 1 and 3, micro-batches, threads, table layouts (bf16)"
for c in "${cases[@]}"; do
  set -- $c
  extra=(--set model.attention=$1 --set train.positions=$2 --set train.objective=$3
         --set model.arch=$4 --set train.negatives=7 --set train.precision=bf16)
  [ "$4" = recgrela ] && extra+=(--set model.drop_path=0.1)
  name=$1-$2-$3-bf16
  across_placements "$name" final -- "${extra[@]}"
done

base=(--set model.attention=linrec_causal --set train.positions=all --set train.checkpoint.every_steps=6)
echo "-- 2. resume"
resume() {
  run whole 1 1 0 auto "${base[@]}" --set train.precision=bf16 || return 1
  run rs 2 1 3 sharded "${base[@]}" --set train.precision=bf16 --set train.max_steps=6 || return 1
  run rs 3 1 3 sharded "${base[@]}" --set train.precision=bf16 --resume latest ||
    { tail -n 3 "$tmp/rs.log"; return 1; }
  local a b
  a=$(summary whole final) && b=$(summary rs final) || return 1
  [ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") | head -n 6; return 1; }
}
check "bf16: a P=2 checkpoint resumed on P=3 = the uninterrupted P=1 run (losses, evaluations, state hash)" resume
mixed() {
  run fp 1 1 0 auto "${base[@]}" || return 1
  run mx 1 1 0 auto "${base[@]}" --set train.max_steps=6 || return 1
  run mx 1 1 0 auto "${base[@]}" --set train.precision=bf16 --resume latest ||
    { tail -n 3 "$tmp/mx.log"; return 1; }
  local a b
  a=$(summary fp final) && b=$(summary mx final) || return 1
  # the first 6 steps are fp32's, bitwise; the rest differ
  [ "$(echo "$a" | head -n 6)" = "$(echo "$b" | head -n 6)" ] && [ "$a" != "$b" ]
}
check "an fp32 checkpoint resumes in bf16 (its first 6 steps fp32's, the rest in bf16)" mixed

echo "-- 3. bf16 against fp32"
close() {
  python3 - "$tmp/whole/metrics.jsonl" "$tmp/fp/metrics.jsonl" <<'PY'
import json, sys
def steps(p):
    s = {}
    for l in open(p):
        e = json.loads(l)
        if e["event"] == "step": s[e["step"]] = e["loss"]
    return [s[k] for k in sorted(s)]
b, f = steps(sys.argv[1]), steps(sys.argv[2])
rel = max(abs(x - y) / abs(y) for x, y in zip(b, f))
print("  largest relative difference of a step loss: %.2e" % rel)
sys.exit(0 if len(b) == len(f) == 12 and b != f and rel < 0.01 else 1)
PY
}
check "bf16 losses differ from fp32's, within 1% per step" close

echo "-- 4. no AVX512-BF16"
LINREC_NO_BF16=1 run nb 1 1 0 auto "${base[@]}" --set train.precision=bf16
check "LINREC_NO_BF16=1: the message, and exactly fp32's training" \
  grep -q "train.precision=bf16: this CPU has no AVX512-BF16; the products run in fp32" "$tmp/nb.log" &&
  [ "$(summary nb final)" = "$(summary fp final)" ]

echo "-- 5. eval and recommend"
"$bin" eval --model "$tmp/whole" --set train.precision=bf16 > "$tmp/ev.out" 2> "$tmp/ev.err"
check "eval --set train.precision=bf16 (exit 0, two splits)" [ $? = 0 ] &&
  [ "$(grep -c '"event":"eval"' "$tmp/ev.out")" = 2 ] || cat "$tmp/ev.err"
"$bin" recommend --model "$tmp/whole" --users 1,2 --set train.precision=bf16 > "$tmp/rec.out" 2> "$tmp/rec.err"
check "recommend --set train.precision=bf16 (exit 0, two users)" [ $? = 0 ] &&
  [ "$(wc -l < "$tmp/rec.out")" = 2 ] || cat "$tmp/rec.err"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
