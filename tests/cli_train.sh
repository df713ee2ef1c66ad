#!/usr/bin/env bash
# cli_train.sh: the linrec CLI end to end on a tiny synthetic dataset:
# train (metrics.jsonl events, model file), eval --model pop / --model FILE,
# recommend, prep + binary round trip, and clear errors with the documented
# exit codes for bad config keys, types, ranges and options (a key given
# twice, a NUL byte, a 100 MB file, a synthetic dataset too large for
# memory, train.negatives beyond the catalog), for model files with a byte
# changed (config section or payload), and for a NUL byte in a data line.
# Usage: cli_train.sh LINREC_BINARY SOURCE_DIR SHARED_DATA_DIR
source "$(dirname "$0")/lib_cli.sh"

tiny=(--set data.synthetic.users=300 --set data.synthetic.items=60 --set data.synthetic.mean_len=12
      --set model.d=16 --set model.heads=2 --set model.layers=1 --set model.inner=32
      --set model.max_len=10 --set train.batch_size=64 --set log.every_steps=5
      --set log.progress=plain --set train.patience=0)

"$bin" train --config "$src/configs/quickstart.json" "${tiny[@]}" --set train.epochs=2 \
  --out "$tmp/run" > "$tmp/train.log" 2>&1
check "train exits 0" test $? -eq 0
m=$tmp/run/metrics.jsonl
check "metrics.jsonl has step events" grep -q '"event":"step","step":5,' "$m"
check "metrics.jsonl has 2 epoch events" test "$(grep -c '"event":"epoch"' "$m")" -eq 2
check "metrics.jsonl has valid evals with ndcg@10 and ndcg@20" \
  grep -q '"event":"eval","split":"valid".*"ndcg@10":.*"ndcg@20":' "$m"
check "metrics.jsonl has a test eval" grep -q '"event":"eval","split":"test"' "$m"
check "metrics.jsonl ends with done" sh -c "tail -n 1 '$m' | grep -q '\"event\":\"done\"'"
check "model file written" test -s "$tmp/run/model.lrm"
check "progress lines printed" grep -q 'epoch 2/2' "$tmp/train.log"

"$bin" eval --config "$src/configs/quickstart.json" "${tiny[@]}" --model pop > "$tmp/pop.json"
check "eval --model pop exits 0" test $? -eq 0
check "eval pop prints valid and test" test "$(grep -c '"event":"eval"' "$tmp/pop.json")" -eq 2

"$bin" eval --model "$tmp/run" --split test > "$tmp/model.json"
check "eval --model DIR exits 0" test $? -eq 0
# The test metrics printed by eval equal those train recorded for the best model.
want=$(grep '"split":"test"' "$m" | grep -o '"ndcg@10":[0-9.]*')
got=$(grep -o '"ndcg@10":[0-9.]*' "$tmp/model.json")
check "eval of the saved model reproduces train's test ndcg@10 ($want vs $got)" test "$want" = "$got"

"$bin" recommend --model "$tmp/run/model.lrm" --users 1,6 --k 5 > "$tmp/rec.json"
check "recommend exits 0" test $? -eq 0
check "recommend prints one line per user with 5 items" \
  test "$(grep -c '"items":\[[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*\]' "$tmp/rec.json")" -eq 2

"$bin" prep --config "$src/configs/quickstart.json" "${tiny[@]}" --out "$tmp/d.lrd" > /dev/null
check "prep writes the binary dataset" test -s "$tmp/d.lrd"
"$bin" eval --config "$src/configs/quickstart.json" "${tiny[@]}" --set data.format=binary \
  --set data.path="$tmp/d.lrd" --model pop > "$tmp/pop2.json"
check "binary dataset gives the same pop metrics" cmp -s "$tmp/pop.json" "$tmp/pop2.json"

# Bad input: exit code 2 and a message naming the key.
expect_err() { # name, expected exit code, expected message regex, command...
  local name=$1 code=$2 re=$3; shift 3
  "$@" > "$tmp/out" 2> "$tmp/err"
  local rc=$?
  if [ $rc -eq "$code" ] && grep -Eq "$re" "$tmp/err"; then ok "$name"; else
    bad "$name (exit $rc: $(head -c 300 "$tmp/err"))"; fi
}
expect_err "unknown --set key" 2 'unknown config key "model.dd"' "$bin" train --set model.dd=3
expect_err "wrong type" 2 '"model.d": expected an integer' "$bin" train --set model.d=abc
expect_err "out of range" 2 '"model.dropout": value 2 out of range' "$bin" train --set model.dropout=2
expect_err "bad enum" 2 '"model.attention": expected one of' "$bin" train --set model.attention=foo
expect_err "heads must divide d" 2 '"model.heads": must divide' "$bin" train --set model.d=10 --set model.heads=3
expect_err "positions=all needs causal" 2 'needs a causal attention kind' "$bin" train --set train.positions=all --set model.attention=linrec
printf '{"model": {"d": 64, "bogus": 1}}' > "$tmp/bad.json"
expect_err "unknown key in config file" 2 "bad.json: unknown config key \"model.bogus\"" "$bin" train --config "$tmp/bad.json"
printf '{"model": {"d": 64,, }}' > "$tmp/broken.json"
expect_err "invalid JSON names file and line" 2 'broken.json:1:[0-9]+: invalid JSON' "$bin" train --config "$tmp/broken.json"
expect_err "missing config file" 1 'nope.json: cannot open' "$bin" train --config "$tmp/nope.json"
printf '{"model": {"d": 32, "d": 48}}' > "$tmp/dup.json"
expect_err "a key given twice in a config file" 2 'dup.json: key "model.d" given twice' \
  "$bin" train --config "$tmp/dup.json"
printf '{"model": {"d": {"x": 1}}}' > "$tmp/deep.json"
expect_err "an unknown key under a key is named in full" 2 'unknown config key "model.d.x"' \
  "$bin" train --config "$tmp/deep.json"
printf '{"model": {"d": 32}}\0' > "$tmp/nul.json"
expect_err "a NUL byte in a config file, with its offset" 2 'nul.json: byte 20: NUL byte' \
  "$bin" train --config "$tmp/nul.json"
truncate -s 100M "$tmp/huge.json"
t0=$(date +%s%N)
expect_err "a 100 MB config file is refused by its size" 2 'huge.json: 104857600 bytes: .*at most' \
  "$bin" train --config "$tmp/huge.json"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
# (the refusal itself takes microseconds, test_config; the time here is
# mostly MPI start-up, bounded loosely for loaded machines)
check "... in seconds, not minutes ($ms ms)" test "$ms" -lt 5000
rm -f "$tmp/huge.json"
expect_err "a synthetic dataset too large for memory is refused with its size" 2 \
  'need about [0-9.]+ GiB to generate.*GiB available' \
  "$bin" train --set data.synthetic.users=1000000000 --set data.synthetic.mean_len=1000 \
  --set data.synthetic.items=100000
expect_err "train.negatives beyond the catalog is refused naming the key" 2 \
  '"train.negatives": 100000 negatives per loss row, but the catalog has 6 items' \
  "$bin" train --set train.objective=bce --set train.negatives=100000 \
  --set data.synthetic.items=6 --set data.synthetic.mean_len=4
for u in 1 2 3; do for i in 1 2 3 4 5 6; do echo "$u::$i::5::$((u * 10 + i))"; done; done > "$tmp/six.dat"
expect_err "... also against the catalog of a data file, once loaded" 2 \
  '"train.negatives": 10 negatives per loss row, but the catalog has 6 items: at most 5' \
  "$bin" train --set train.objective=sampled --set train.negatives=10 \
  --set data.format=movielens --set data.path="$tmp/six.dat" --out "$tmp/six"
expect_err "unknown option" 2 'unknown option --frobnicate' "$bin" train --frobnicate
expect_err "unknown command" 2 "unknown command 'fly'" "$bin" fly
expect_err "missing data file" 1 'missing.dat' "$bin" train --set data.format=movielens --set data.path="$tmp/missing.dat" --out "$tmp/x"
printf '1::10::5::100\n1::20::5::2\0000\n1::30::5::300\n' > "$tmp/nul.dat"
expect_err "a NUL byte inside a text line: prep exits 1 naming file:line" 1 \
  'nul.dat:2: NUL byte at byte 12 of the line' \
  "$bin" prep --set data.format=movielens --set data.path="$tmp/nul.dat" --out "$tmp/nul.bin"
expect_err "damaged model file" 1 'cut.lrm: byte [0-9]+: ' sh -c "head -c 100 '$tmp/run/model.lrm' > '$tmp/cut.lrm' && '$bin' eval --model '$tmp/cut.lrm'"
# Every byte of the model file is under a checksum: a digit of the stored
# config (users 300 -> 200, k 10 -> 30) or a payload byte changed.
edit_model() { # OUT PYTHON-EXPRESSION-ON-b
  python3 -c "
import sys; b = bytearray(open(sys.argv[1], 'rb').read()); $2
open(sys.argv[2], 'wb').write(bytes(b))" "$tmp/run/model.lrm" "$tmp/$1"
}
edit_model users.lrm "b[:] = b.replace(b'\"data.synthetic.users\":300', b'\"data.synthetic.users\":200', 1)"
expect_err "model file: a config digit changed (users): eval exits 1 naming the config section" 1 \
  'users.lrm: byte 64: config section .*CRC32' "$bin" eval --model "$tmp/users.lrm"
edit_model k.lrm "b[:] = b.replace(b'\"eval.k\":[10', b'\"eval.k\":[30', 1)"
expect_err "model file: a config digit changed (eval.k): recommend exits 1" 1 \
  'k.lrm: byte 64: config section' "$bin" recommend --model "$tmp/k.lrm" --users 1
mkfifo "$tmp/fifo.lrm"
expect_err "model file: a FIFO is refused, never opened for a blocking read" 1 \
  'fifo.lrm: is a FIFO, not a model file' timeout 20 "$bin" eval --model "$tmp/fifo.lrm"
# the payload (section 3) ends where the id maps (section 4, its size at byte 32) begin
edit_model payload.lrm "import struct; b[len(b) - struct.unpack('<Q', bytes(b[32:40]))[0] - 100] ^= 0x04"
expect_err "model file: a payload byte flipped: eval exits 1 naming the payload" 1 \
  'payload.lrm: byte [0-9]+: payload section' "$bin" eval --model "$tmp/payload.lrm"
edit_model ids.lrm "b[len(b) - 5] ^= 0x04"
expect_err "model file: an id-map byte flipped: eval (which needs no ids) exits 1 naming the id maps" 1 \
  'ids.lrm: byte [0-9]+: id-map section' "$bin" eval --model "$tmp/ids.lrm"

"$bin" train --help > "$tmp/help" 2>&1
check "train --help lists every key" grep -q 'eval.exclude_history' "$tmp/help"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
