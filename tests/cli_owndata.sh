#!/usr/bin/env bash
# cli_owndata.sh: users' own data in, models out (issue 19):
#  1. a CSV with string ids and its own header (`;`, columns in any order,
#     an extra column) goes through `prep` with data.columns and
#     data.separator; a missing column is an error naming the file, line and
#     column; the binary dataset keeps the strings (prep of it again is the
#     same bytes);
#  2. a model trained on it carries the id maps (model file version 4):
#     `recommend` takes and prints the original string ids (007 = 7 for
#     numeric ids), an unknown user is a usage error (exit 2);
#     batches: --users all / --users-file to --out FILE; ad-hoc histories
#     (--history ID,...; JSON lines on stdin): a user's whole history given
#     as item ids ranks exactly as the user; unknown items and users and
#     malformed lines are errors naming them;
#  3. `export` writes items.npy/items.txt, dense/<tensor>.npy and
#     config.json; a numpy script (Debian's python3-numpy) loads them and,
#     from the hidden states `recommend --hidden` dumped, reproduces
#     recommend's top-10 items and scores to 1e-5; for model.arch=ram the
#     users table and users.txt are exported too.
# Usage: cli_owndata.sh LINREC_BINARY SOURCE_DIR
source "$(dirname "$0")/lib_cli.sh"
py=/usr/bin/python3
# 80 users U000..U079, 40 items B00K00..B00K39 and the numeric item 7,
# ts;userId;extra;itemId;stars
/usr/bin/python3 - "$tmp/own.csv" <<'PY'
import random, sys
r = random.Random(5)
with open(sys.argv[1], "w") as f:
    f.write("ts;userId;extra;itemId;stars\n")
    t = 0
    for u in range(80):
        for _ in range(r.randint(4, 14)):
            t += 1
            i = r.randint(0, 40)
            item = "007" if i == 40 else "B00K%02d" % i
            f.write('%d;"U%03d";x y;%s;%d\n' % (t, u, item, r.randint(1, 5)))
PY
cols=(--set data.format=csv --set data.path="$tmp/own.csv" --set data.separator=semicolon
      --set data.columns=user=userId,item=itemId,time=ts,rating=stars)
"$bin" prep "${cols[@]}" --out "$tmp/own.lrd" > "$tmp/prep.out" 2> "$tmp/prep.err"
check "prep: string ids with data.columns and data.separator (80 users, 41 items)" \
  grep -q '"users":80,"items":41' "$tmp/prep.out" || cat "$tmp/prep.err"
"$bin" prep --set data.format=binary --set data.path="$tmp/own.lrd" --out "$tmp/again.lrd" > /dev/null 2>&1
check "prep: the binary dataset with string ids reads and writes back the same bytes" \
  cmp -s "$tmp/own.lrd" "$tmp/again.lrd"
"$bin" prep "${cols[@]}" --set data.columns=user=userId,item=item_id --out "$tmp/x.lrd" \
  > /dev/null 2> "$tmp/miss.err"
rc=$?
check "prep: a missing column: exit 1, the file, line 1, the column and the header" \
  [ $rc = 1 ] && grep -q "own.csv:1: no column 'item_id' (data.columns item=item_id)" "$tmp/miss.err" &&
  grep -q "ts, userId, extra, itemId, stars" "$tmp/miss.err" || cat "$tmp/miss.err"
"$bin" prep "${cols[@]}" --set data.separator=ab --out "$tmp/x.lrd" > /dev/null 2> "$tmp/sep.err"
check "prep: a bad data.separator is a config error (exit 2)" [ $? = 2 ] ||  cat "$tmp/sep.err"

tiny=(--set data.format=binary --set data.path="$tmp/own.lrd" --set model.d=16 --set model.heads=2
      --set model.layers=2 --set model.inner=16 --set model.max_len=8 --set train.batch_size=32
      --set train.epochs=2 --set train.patience=0 --set log.progress=off)
timeout 300 "$bin" train "${tiny[@]}" --out "$tmp/run" > "$tmp/train.log" 2>&1
check "train on string ids (exit 0)" [ $? = 0 ] || tail -5 "$tmp/train.log"
check "model file: version 4" $py -c '
import struct, sys
b = open(sys.argv[1], "rb").read(64)
sys.exit(0 if b[:8] == b"LRMODEL1" and struct.unpack("<I", b[8:12])[0] == 4 and struct.unpack("<Q", b[32:40])[0] > 0 else 1)' "$tmp/run/model.lrm"
"$bin" recommend --model "$tmp/run" --users U003,U017,U042,U079 --k 10 --include-history \
  --hidden "$tmp/h.npy" > "$tmp/rec.out" 2> "$tmp/rec.err"
check "recommend: string user and item ids in, quoted ids out" \
  grep -q '^{"user":"U017","items":\["' "$tmp/rec.out" || cat "$tmp/rec.err" "$tmp/rec.out"
[ "$(wc -l < "$tmp/rec.out")" = 4 ] || bad "recommend: 4 lines"
"$bin" recommend --model "$tmp/run" --users U003,NOBODY --k 10 > /dev/null 2> "$tmp/unk.err"
check "recommend: an unknown user is a usage error naming it (exit 2)" [ $? = 2 ] &&
  grep -q "user 'NOBODY' is not in the dataset" "$tmp/unk.err" || cat "$tmp/unk.err"

# batches: --users all and --users-file, to --out FILE
"$bin" recommend --model "$tmp/run" --users all --k 5 --out "$tmp/all.jsonl" > "$tmp/all.out" 2>&1
check "recommend --users all --out FILE: 80 lines, stdout empty" \
  [ "$(wc -l < "$tmp/all.jsonl")" = 80 ] && [ ! -s "$tmp/all.out" ] || cat "$tmp/all.out"
printf 'U017\n\n  U003 \nU079\n' > "$tmp/ids.txt"
"$bin" recommend --model "$tmp/run" --users-file "$tmp/ids.txt" --k 5 > "$tmp/uf.out" 2>&1
check "recommend --users-file: the lines of --users all for those users, in file order" \
  cmp -s "$tmp/uf.out" <(grep -E '"user":"(U017|U003|U079)"' "$tmp/all.jsonl" |
                        sort -t'"' -k4,4 | awk 'NR==2{print} NR==1{a=$0} NR==3{c=$0} END{print a; print c}')
printf 'U017\nWHO\n' > "$tmp/ids2.txt"
"$bin" recommend --model "$tmp/run" --users-file "$tmp/ids2.txt" > /dev/null 2> "$tmp/uf2.err"
check "recommend --users-file: an unknown user names the file and line (exit 1)" [ $? = 1 ] &&
  grep -q "ids2.txt:2: user 'WHO' is not in the dataset" "$tmp/uf2.err" || cat "$tmp/uf2.err"
# ad-hoc histories: a user's whole history given as item ids ranks as that user
hist=$($py -c 'import sys
h = [l.split(";")[3] for l in open(sys.argv[1]).read().split("\n")[1:] if l and l.split(";")[1] == "\"U003\""]
print(",".join(h))' "$tmp/own.csv")
"$bin" recommend --model "$tmp/run" --history "$hist" --k 10 --include-history > "$tmp/h1.out" 2> "$tmp/h1.err"
check "recommend --history (the items of U003, 007 as given): U003's list and scores" \
  [ "$(sed 's/^{"id":null,/{/' "$tmp/h1.out")" = "$(grep '"user":"U003"' "$tmp/rec.out" | sed 's/^{"user":"U003",/{/')" ] ||
  { cat "$tmp/h1.err" "$tmp/h1.out"; grep U003 "$tmp/rec.out"; }
printf '{"id": "mine", "items": %s}\n\n{"items": ["B00K01", 7]}\n' \
  "$($py -c 'import json,sys; print(json.dumps(sys.argv[1].split(",")))' "$hist")" |
  "$bin" recommend --model "$tmp/run" --history - --k 10 --include-history > "$tmp/h2.out" 2> "$tmp/h2.err"
check "recommend --history - (JSON lines): one line each, ids given back, the first as --history" \
  [ "$(wc -l < "$tmp/h2.out")" = 2 ] && grep -q '^{"id":null,"items":\[' "$tmp/h2.out" &&
  [ "$(head -1 "$tmp/h2.out" | sed 's/^{"id":"mine",/{/')" = "$(sed 's/^{"id":null,/{/' "$tmp/h1.out")" ] ||
  cat "$tmp/h2.err" "$tmp/h2.out"
printf '{"id": 1, "items": ["B00K01"]}\n{"id": 2, "items": ["B00K01", "NOPE"]}\n' |
  "$bin" recommend --model "$tmp/run" --history - > /dev/null 2> "$tmp/h3.err"
check "recommend --history -: an unknown item names stdin's line and the item (exit 1)" [ $? = 1 ] &&
  grep -q "stdin:2: item 'NOPE' is not in the model's catalog" "$tmp/h3.err" || cat "$tmp/h3.err"
echo '{"items": 5}' | "$bin" recommend --model "$tmp/run" --history - > /dev/null 2> "$tmp/h4.err"
check "recommend --history -: a line that is not {id, items:[...]} is refused (exit 1)" [ $? = 1 ] &&
  grep -q "stdin:1: expected a JSON object" "$tmp/h4.err" || cat "$tmp/h4.err"
"$bin" recommend --model "$tmp/run" --history B00K01,XX > /dev/null 2> "$tmp/h5.err"
check "recommend --history: an unknown item is a usage error (exit 2)" [ $? = 2 ] &&
  grep -q "item 'XX' is not in the model's catalog" "$tmp/h5.err" || cat "$tmp/h5.err"

mv "$tmp/own.lrd" "$tmp/own-moved.lrd"
"$bin" recommend --model "$tmp/run" --users U003 --set data.path="$tmp/own-moved.lrd" > "$tmp/rec2.out" 2>&1
check "recommend: --set data.path moves the data" grep -q '"user":"U003"' "$tmp/rec2.out" || cat "$tmp/rec2.out"

"$bin" export --model "$tmp/run/model.lrm" --out "$tmp/exp" > "$tmp/exp.out" 2> "$tmp/exp.err"
check "export: exit 0, items.npy, items.txt, dense tensors, config.json" \
  [ -s "$tmp/exp/items.npy" ] && [ -s "$tmp/exp/items.txt" ] && [ -s "$tmp/exp/dense/pos.npy" ] &&
  [ -s "$tmp/exp/config.json" ] || cat "$tmp/exp.err"
check "export: every dense/*.npy loads as float32; per-layer ones are (2, n); no empty tensor" \
  $py -c 'import glob, sys
import numpy as np
a = {f.split("/")[-1][:-4]: np.load(f) for f in glob.glob(sys.argv[1] + "/dense/*.npy")}
ok = all(x.dtype == np.float32 and x.size > 0 for x in a.values())
ok = ok and a["qkv_w"].shape == (2, 16 * 48) and a["pos"].ndim == 1 and "attn_p" not in a
sys.exit(0 if ok else 1)' "$tmp/exp"
check "export: items.txt holds the original ids in byte order (007 is 7)" \
  $py -c 'import sys
ids = open(sys.argv[1]).read().split("\n")[:-1]
sys.exit(0 if len(ids) == 41 and ids[0] == "7" and ids[1:] == ["B00K%02d" % i for i in range(40)] else 1)' "$tmp/exp/items.txt"
check "export: numpy reproduces recommend's top-10 ids and scores from the hidden states (1e-5)" \
  $py - "$tmp/exp" "$tmp/h.npy" "$tmp/rec.out" <<'PY'
import json, sys
import numpy as np
d, hidden, rec = sys.argv[1], np.load(sys.argv[2]), [json.loads(l) for l in open(sys.argv[3])]
E = np.load(d + "/items.npy")
ids = open(d + "/items.txt").read().split("\n")[:-1]
assert E.dtype == np.float32 and E.shape == (len(ids), hidden.shape[1]), (E.shape, hidden.shape)
for h, r in zip(hidden, rec):
    s = E.astype(np.float64) @ h.astype(np.float64)
    top = sorted(range(len(ids)), key=lambda k: (-s[k], k))[:10]
    assert [ids[k] for k in top] == r["items"], ([ids[k] for k in top], r["items"])
    assert np.max(np.abs(s[top] - np.array(r["scores"]))) < 1e-5, (s[top], r["scores"])
PY

# ram: the users table comes out too
timeout 300 "$bin" train "${tiny[@]}" --set data.path="$tmp/own-moved.lrd" --set model.arch=ram \
  --set train.max_steps=6 --out "$tmp/ram" > "$tmp/ram.log" 2>&1
check "ram: train on string ids (exit 0)" [ $? = 0 ] || tail -5 "$tmp/ram.log"
"$bin" export --model "$tmp/ram" --out "$tmp/rexp" > /dev/null 2> "$tmp/rexp.err"
check "ram export: users.npy (80 x 16) with users.txt U000..U079" $py -c 'import sys
import numpy as np
U = np.load(sys.argv[1] + "/users.npy"); ids = open(sys.argv[1] + "/users.txt").read().split()
sys.exit(0 if U.shape == (80, 16) and ids == ["U%03d" % u for u in range(80)] else 1)' "$tmp/rexp" ||
  cat "$tmp/rexp.err"
"$bin" recommend --model "$tmp/ram" --users U005 --k 10 > "$tmp/ru.out" 2>&1
h5=$($py -c 'import sys
h = [l.split(";")[3] for l in open(sys.argv[1]).read().split("\n")[1:] if l and l.split(";")[1] == "\"U005\""]
print("[" + ",".join("\"%s\"" % x for x in h) + "]")' "$tmp/own.csv")
echo "{\"id\": \"U005\", \"items\": $h5}" |
  "$bin" recommend --model "$tmp/ram" --history - --k 10 > "$tmp/rh.out" 2> "$tmp/rh.err"
check "ram: an ad-hoc history with a known user's id uses that user's row (U005's list)" \
  [ "$(sed 's/^{"id":"U005",/{/' "$tmp/rh.out")" = "$(sed 's/^{"user":"U005",/{/' "$tmp/ru.out")" ] ||
  cat "$tmp/rh.err" "$tmp/rh.out" "$tmp/ru.out"
"$bin" recommend --model "$tmp/ram" --history B00K01 > /dev/null 2> "$tmp/rh2.err"
check "ram: an ad-hoc history without a known user is a usage error (exit 2)" [ $? = 2 ] &&
  grep -q "needs the \"id\" of a known user" "$tmp/rh2.err" || cat "$tmp/rh2.err"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
