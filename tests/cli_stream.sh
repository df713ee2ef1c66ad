#!/usr/bin/env bash
# cli_stream.sh: `linrec recommend --stream` end to end, on string ids:
#  1. for models that step (sasrec with linrec_causal, recgrela with
#     rela_causal), every answer of an interleaved stream of two users (one
#     the data knows, whose history comes first, and a new one), each going
#     past model.max_len (N = 12) twice with --stream-keep 5, equals
#     `recommend --history -` of the documented window (the history's last
#     min(n, N) items at the first event, then restarted from the last 5 when
#     it would pass N; also with keep 9 > N/2 + 1): the same items and the
#     same scores, to the printed digit (the hidden states are bitwise equal:
#     tests/test_stream.c);
#  2. a model that cannot step (softmax) answers as `recommend --history` of
#     the history's last N items at every event;
#  3. without --include-history no answer holds an item of the user's
#     history (the data's and the stream's);
#  4. bad events (an unknown item, a line with one field) are reported with
#     their line and skipped, the others answered, and the exit status is 1;
#     --stream with --users, a bad --stream-keep are usage errors (exit 2).
# Usage: cli_stream.sh LINREC_BINARY SOURCE_DIR
source "$(dirname "$0")/lib_cli.sh"
py=/usr/bin/python3
$py - "$tmp/data.txt" "$tmp/events.txt" <<'PY'
import random, sys
r = random.Random(3)
with open(sys.argv[1], "w") as f:
    for u in range(60):
        for _ in range(r.randint(5, 20)):
            f.write("U%02d I%02d\n" % (u, r.randint(0, 49)))
with open(sys.argv[2], "w") as f:
    for _ in range(30):
        f.write("U03 I%02d\n" % r.randint(0, 49))
        f.write("NEW,I%02d\n" % r.randint(0, 49))
PY
base=(--set data.format=sasrec --set data.path="$tmp/data.txt" --set model.d=16 --set model.heads=2
      --set model.layers=2 --set model.inner=32 --set model.max_len=12 --set train.batch_size=16
      --set train.epochs=1 --set train.patience=0 --set log.progress=off --set train.positions=all)
# expected NAME KEEP STEPS: the --history - input of each event's window
expected() {
  $py - "$tmp/data.txt" "$tmp/events.txt" "$2" "$3" > "$tmp/$1.hist" <<'PY'
import json, sys
data, events, keep, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
N = 12
hist, w0 = {}, {}
for line in open(data):
    u, i = line.split()
    hist.setdefault(u, []).append(i)
for line in open(events):
    u, i = line.replace(",", " ").split()
    h = hist.setdefault(u, [])
    h.append(i)
    n = len(h)
    if not steps:
        win = h[-N:]
    else:
        if u not in w0:
            w0[u] = max(0, n - N)
        elif n - w0[u] > N:
            w0[u] = n - keep
        win = h[w0[u]:]
    print(json.dumps({"id": u, "items": win}))
PY
}
# same NAME: the stream's answers equal the --history answers, item and score lists
same() {
  $py - "$tmp/$1.stream" "$tmp/$1.ref" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
bad = [k for k, (x, y) in enumerate(zip(a, b)) if (x["items"], x["scores"]) != (y["items"], y["scores"])]
ok = len(a) == len(b) == 60 and not bad
if not ok: print("answers", len(a), len(b), "first difference at event", bad[:1])
sys.exit(0 if ok else 1)
PY
}
for m in "causal sasrec linrec_causal 1" "grela recgrela rela_causal 1" "soft sasrec softmax 0"; do
  set -- $m
  name=$1 arch=$2 kind=$3 steps=$4
  timeout 300 "$bin" train "${base[@]}" --set model.arch="$arch" --set model.attention="$kind" \
    --out "$tmp/$name" > "$tmp/$name.log" 2>&1 || { bad "$name: train"; tail -3 "$tmp/$name.log"; continue; }
  "$bin" recommend --model "$tmp/$name" --stream --stream-keep 5 --include-history \
    < "$tmp/events.txt" > "$tmp/$name.stream" 2> "$tmp/$name.err"
  check "$name ($arch/$kind): --stream answers every event (exit 0)" [ $? = 0 ] || cat "$tmp/$name.err"
  expected "$name" 5 "$steps"
  "$bin" recommend --model "$tmp/$name" --history - --include-history < "$tmp/$name.hist" \
    > "$tmp/$name.ref" 2> "$tmp/$name.referr" || cat "$tmp/$name.referr"
  if [ "$steps" = 1 ]; then
    check "$name: each answer is recommend --history of its window (N = 12, keep 5)" same "$name"
    check "$name: says it steps" grep -q "steps an event at a time" "$tmp/$name.err"
  else
    check "$name: each answer is recommend --history of the last N items" same "$name"
    check "$name: says it re-encodes" grep -q "re-encodes the history's last 12 items" "$tmp/$name.err"
  fi
done
# keep 9 > N/2 + 1: the next window cannot be built alongside from its start
"$bin" recommend --model "$tmp/causal" --stream --stream-keep 9 --include-history \
  < "$tmp/events.txt" > "$tmp/k9.stream" 2> "$tmp/k9.err" || cat "$tmp/k9.err"
expected k9 9 1
"$bin" recommend --model "$tmp/causal" --history - --include-history < "$tmp/k9.hist" \
  > "$tmp/k9.ref" 2> "$tmp/k9.referr" || cat "$tmp/k9.referr"
check "causal, --stream-keep 9: each answer is recommend --history of its window" same k9
"$bin" recommend --model "$tmp/causal" --stream < "$tmp/events.txt" > "$tmp/excl.stream" 2> /dev/null
check "without --include-history no answer holds an item of the user's history" \
  $py - "$tmp/data.txt" "$tmp/events.txt" "$tmp/excl.stream" <<'PY'
import json, sys
hist = {}
for line in open(sys.argv[1]):
    u, i = line.split(); hist.setdefault(u, set()).add(i)
out = [json.loads(l) for l in open(sys.argv[3])]
ev = [l.replace(",", " ").split() for l in open(sys.argv[2])]
ok = len(out) == len(ev)
for (u, i), a in zip(ev, out):
    hist.setdefault(u, set()).add(i)
    ok &= a["user"] == u and a["item"] == i and len(a["items"]) == 10 and not (set(a["items"]) & hist[u])
sys.exit(0 if ok else 1)
PY
printf 'U03 I01\nU03 NOPE\nonlyone\nNEW I02\n' | "$bin" recommend --model "$tmp/causal" --stream \
  > "$tmp/bad.out" 2> "$tmp/bad.err"
rc=$?
check "bad events: reported with their line, skipped, the rest answered, exit 1" \
  [ $rc = 1 ] && [ "$(wc -l < "$tmp/bad.out")" = 2 ] &&
  grep -q "stdin:2: item 'NOPE' is not in the model's catalog: event skipped" "$tmp/bad.err" &&
  grep -q "stdin:3: expected \`user item\`, got 'onlyone'" "$tmp/bad.err" &&
  grep -q "2 of 4 events skipped" "$tmp/bad.err" || cat "$tmp/bad.err"
"$bin" recommend --model "$tmp/causal" --stream --users all < /dev/null > /dev/null 2> "$tmp/u.err"
check "--stream with --users: usage error (exit 2)" [ $? = 2 ] || cat "$tmp/u.err"
"$bin" recommend --model "$tmp/causal" --stream --stream-keep 13 < /dev/null > /dev/null 2> "$tmp/k.err"
check "--stream-keep past model.max_len: usage error (exit 2) naming it" [ $? = 2 ] &&
  grep -q "stream-keep: expected 1..model.max_len (12), got 13" "$tmp/k.err" || cat "$tmp/k.err"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
