#!/usr/bin/env bash
# cli_ram.sh: the ram architecture end to end, with its rank-local users table:
#  1. the same training at P = 1, 2, 3 and 4 ranks (other micro-batches, 2
#     threads, either item-table layout) gives exactly the same per-step
#     losses (17 digits), evaluations and final state (done.state_hash:
#     every parameter and Adam moment, the users rows included): softmax
#     with positions=last and full CE (the fast path), linrec_causal with
#     positions=all and BCE whose negatives skip the user's history (with
#     clipping and weight decay), RAM-u with linrec; the comm accounting of
#     every epoch at P > 1 shows 0 bytes of the users table (kind `users`)
#     while the item rows and the dense gradient travel;
#  2. a P=2 checkpoint resumed on P=3 re-cuts the users rows (the manifest
#     lists a users shard per rank with its user range) and ends with the
#     uninterrupted run's losses and a byte-identical model file;
#  3. the model file: `eval --model` prints the test metrics of training at
#     P = 1 and 2; `recommend` gives the same lists at P = 1 and 2, also for
#     a user with one interaction (no training example), whose users row in
#     the model file is exactly 0, as every user's without a training
#     example, while every trained user's is not.
# Usage: cli_ram.sh LINREC_BINARY SOURCE_DIR [SHARED_DATA_DIR]
source "$(dirname "$0")/lib_cli.sh"
mpi=(mpirun --oversubscribe --mca mpi_yield_when_idle 1)

# 160 users (ids 1..160) with 3..24 interactions over 90 items, and users 161
# and 162 with one interaction each: they have no training example.
data=$tmp/data.txt
python3 - "$data" <<'PY'
import random, sys
r = random.Random(17)
with open(sys.argv[1], "w") as f:
    for u in range(1, 161):
        for _ in range(r.randint(3, 24)):
            f.write("%d %d\n" % (u, r.randint(1, 90)))
    f.write("161 5\n162 7\n")
PY
tiny=(--set data.format=sasrec --set data.path="$data" --set model.arch=ram
      --set model.d=16 --set model.heads=2 --set model.layers=2 --set model.inner=16
      --set model.max_len=10 --set model.dropout=0.2 --set model.ln_eps=1e-8
      --set train.beta2=0.98 --set train.batch_size=48 --set train.epochs=3 --set train.patience=0
      --set train.max_steps=12 --set log.every_steps=1 --set log.progress=off
      --set eval.k=10,20 --set eval.exclude_history=true)

# train NP OUT ARGS...: linrec train (under mpirun), log in OUT.log.
train() {
  local np=$1 out=$2; shift 2
  timeout 300 "${mpi[@]}" -np "$np" "$bin" train "${tiny[@]}" "$@" --out "$tmp/$out" \
    > "$tmp/$out.log" 2>&1 || { tail -n 5 "$tmp/$out.log"; return 1; }
}
# summary OUT [final]: lib_cli.sh's
# users_zero OUT: every epoch event's users traffic is 0, the item rows' and dense's not
users_zero() {
  python3 - "$tmp/$1/metrics.jsonl" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
cm = [e["comm_per_step"] for e in ev if e["event"] == "epoch"]
assert cm, "no epoch events"
for c in cm:
    assert float(c["users_bytes"]) == 0, c
    items = float(c["lookup_bytes"]) + float(c["push_bytes"]) + float(c["table_allreduce_bytes"])
    assert items > 0 and float(c["dense_bytes"]) > 0, c
print("  %d epochs: users 0 bytes per step; item rows %s, dense %s bytes per step" % (
    len(cm), int(items), cm[-1]["dense_bytes"]))
PY
}

# ---- 1. P = 1..4 ------------------------------------------------------------------------------
echo "-- 1. P = 1..4 (at ${SECONDS}s)"
# placement: name np threads micro_batch table
all_placements=("p1 1 1 0 replicated" "p2 2 1 3 sharded" "p3 3 1 5 replicated"
                "p4 4 1 2 auto" "p1t2 1 2 7 sharded")
cases=("softmax last ce users" "linrec_causal all bce users" "linrec last ce ramu")
for c in "${cases[@]}"; do
  set -- $c
  extra=(--set model.attention=$1 --set train.positions=$2 --set train.objective=$3
         --set model.ram.users=$([ "$4" = users ] && echo true || echo false))
  [ "$3" = bce ] && extra+=(--set train.negatives=3 --set train.negatives_skip_history=true
                            --set train.clip_norm=0.5 --set train.weight_decay=0.01)
  name=$1-$2-$3-$4
  placements=("${all_placements[@]}")
  [ "$4" = ramu ] && placements=("p1 1 1 0 replicated" "p3 3 1 5 sharded")
  ref=""
  for p in "${placements[@]}"; do
    set -- $p
    if ! train "$2" "$name-$1" "${extra[@]}" --set train.threads="$3" --set train.micro_batch="$4" \
         --set dist.item_table="$5" || ! got=$(summary "$name-$1"); then
      bad "$name: $1 ($2 ranks) runs"
      continue
    fi
    [ "$2" -gt 1 ] && check "$name: $1 ($2 ranks): the users table moves 0 bytes" users_zero "$name-$1"
    if [ -z "$ref" ]; then ref=$got; refname=$1; continue; fi
    if [ "$got" = "$ref" ]; then
      ok "$name: $1 ($2 ranks, $3 threads, micro-batch $4, $5 table) = $refname, bitwise"
    else
      bad "$name: $1 ($2 ranks, $3 threads, micro-batch $4, $5 table) = $refname, bitwise"
      diff <(echo "$ref") <(echo "$got") | head -n 6
    fi
  done
done

# ---- 2. resume 2 -> 3 -------------------------------------------------------------------------
echo "-- 2. resume a P=2 checkpoint on P=3 (at ${SECONDS}s)"
ck=(--set model.attention=softmax --set train.positions=last --set train.checkpoint.every_steps=6
    --set dist.item_table=sharded)
recut() {
  train 2 rc "${ck[@]}" --set train.max_steps=6 || return 1
  "$bin" ckpt inspect "$tmp/rc/checkpoints/step-00000006" > "$tmp/rc.inspect" 2>&1 || return 1
  # the users shards: one per rank, with the rank's user range
  grep -E "users-r0000.zst +users +rows 0\.\.[0-9]+ " "$tmp/rc.inspect" > /dev/null &&
    grep -E "users-r0001.zst +users +rows [0-9]+\.\.162 " "$tmp/rc.inspect" > /dev/null || {
    grep users "$tmp/rc.inspect"; return 1; }
  train 3 rc "${ck[@]}" --resume latest || return 1
  grep -q "written by 2 ranks: rows re-cut" "$tmp/rc.log" || { tail -n 3 "$tmp/rc.log"; return 1; }
  train 1 rc-ref "${ck[@]}" || return 1
  [ "$(summary rc final)" = "$(summary rc-ref final)" ] && cmp "$tmp/rc-ref/model.lrm" "$tmp/rc/model.lrm"
}
check "a P=2 checkpoint (users shards 0..k and k..162) resumed on P=3: losses, evaluations, state and model file = the P=1 run's" recut

# ---- 3. the model file: eval, recommend, a user never seen ------------------------------------
echo "-- 3. eval and recommend from the model file (at ${SECONDS}s)"
# two whole epochs: every user with a training example has had its turn
train 1 full --set model.attention=softmax --set train.positions=last --set train.max_steps=0 \
  --set train.epochs=2 || bad "two epochs at P=1 run"
model=$tmp/full
evals() { # NP: eval --model at NP ranks = the test metrics training reported
  timeout 120 "${mpi[@]}" -np "$1" "$bin" eval --model "$model" --split test > "$tmp/eval$1.out" \
    2> "$tmp/eval$1.err" || { cat "$tmp/eval$1.err"; return 1; }
  python3 - "$tmp/eval$1.out" "$model/metrics.jsonl" <<'PY'
import json, sys
got = json.loads(open(sys.argv[1]).read())
want = [json.loads(l) for l in open(sys.argv[2])]
want = [e for e in want if e["event"] == "eval" and e["split"] == "test"][-1]
keys = [k for k in want if "@" in k]
assert keys and all("%.6f" % float(got[k]) == "%.6f" % float(want[k]) for k in keys), (got, want)
print("  test", {k: got[k] for k in keys if k.endswith("@10")})
PY
}
check "eval --model at P=1: the test metrics of training" evals 1
check "eval --model at P=2: the test metrics of training" evals 2
recs() { # NP: recommend for users 3, 40, 161 (one interaction) at NP ranks
  timeout 120 "${mpi[@]}" -np "$1" "$bin" recommend --model "$model" --users 3,40,161 --k 5 \
    > "$tmp/rec$1.out" 2> "$tmp/rec$1.err" || { cat "$tmp/rec$1.err"; return 1; }
  [ "$(grep -c '"items":\[[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*\]' "$tmp/rec$1.out")" = 3 ]
}
check "recommend at P=1: five items for each of users 3, 40 and 161" recs 1
recs2() { recs 2 && cmp "$tmp/rec1.out" "$tmp/rec2.out"; }
check "recommend at P=2: the same lists and scores" recs2
# the users rows in the model file (io/modelfile.h: header, config, group
# table, one zstd frame of the groups' rows in table order)
unseen() {
  python3 - "$model/model.lrm" "$data" <<'PY'
import array, collections, struct, subprocess, sys
# users without a training example: fewer than 2 training items (the last
# two of a user with 3 or more are its validation and test targets)
n = collections.Counter(int(l.split()[0]) for l in open(sys.argv[2]))
want = [u - 1 for u in sorted(n) if (n[u] - 2 if n[u] >= 3 else n[u]) < 2]
b = open(sys.argv[1], "rb").read()
cfg, ng, pay = struct.unpack_from("<Q", b, 16)[0], struct.unpack_from("<Q", b, 24)[0], struct.unpack_from("<Q", b, 48)[0]
tab = 64 + cfg
groups = [(b[tab + 32 * i:tab + 32 * i + 16].rstrip(b"\0").decode(),) + struct.unpack_from("<QQ", b, tab + 32 * i + 16) for i in range(ng)]
raw = subprocess.run(["zstd", "-dc"], input=b[tab + 32 * ng:tab + 32 * ng + pay], stdout=subprocess.PIPE, check=True).stdout
x = array.array("f"); x.frombytes(raw)
off = 0
for name, rows, width in groups:
    if name == "users": users = [x[off + r * width:off + (r + 1) * width] for r in range(rows)]
    off += rows * width
assert off == len(x) and len(users) == 162, (off, len(x))
zero = [r for r in range(162) if all(v == 0.0 for v in users[r])]
print("  users rows exactly 0:", [r + 1 for r in zero], "; without a training example:",
      [r + 1 for r in want])
sys.exit(0 if zero == want and 160 in want and 161 in want else 1)
PY
}
check "model file: the users rows of the users without a training example (161, 162: one interaction; those with 3) are 0, every other user's is not" unseen

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
