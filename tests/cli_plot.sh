#!/usr/bin/env bash
# cli_plot.sh: `linrec plot` on two real short runs: a PNG of 1500 x 450
# that is not blank (several colours, most pixels white), an SVG with the
# runs' names in its legend; --csv with one row per (run, step), a step
# repeated in metrics.jsonl (as after a resume) counted once with its last
# value; a missing run directory and a missing gnuplot are clear errors.
# Skips (77) when gnuplot is not installed (Debian: gnuplot-nox).
# Usage: cli_plot.sh LINREC_BINARY SOURCE_DIR
source "$(dirname "$0")/lib_cli.sh"
command -v gnuplot > /dev/null || { echo "SKIP: gnuplot is not installed (apt-get install gnuplot-nox)"; exit 77; }
py=/usr/bin/python3
tiny=(--config "$src/configs/quickstart.json" --set data.synthetic.users=300
      --set data.synthetic.items=80 --set data.synthetic.mean_len=12 --set model.d=8
      --set model.heads=2 --set model.layers=1 --set model.inner=16 --set model.max_len=8
      --set train.batch_size=64 --set train.epochs=3 --set train.patience=0
      --set log.progress=off --set log.every_steps=2)
for s in 1 2; do
  timeout 300 "$bin" train "${tiny[@]}" --set train.seed=$s --out "$tmp/seed$s" > "$tmp/t$s.log" 2>&1 ||
    { bad "train run $s"; tail -3 "$tmp/t$s.log"; }
done
# a step logged twice (as when a run resumes from an earlier checkpoint)
grep '"event":"step","step":4,' "$tmp/seed1/metrics.jsonl" | sed 's/"loss":[0-9.e+-]*/"loss":9.5/' \
  >> "$tmp/seed1/metrics.jsonl"
"$bin" plot "$tmp/seed1" "$tmp/seed2/" --out "$tmp/p.png" --csv "$tmp/p.csv" > "$tmp/plot.log" 2>&1
check "plot: exit 0" [ $? = 0 ] || cat "$tmp/plot.log"
check "plot: the PNG is 1500 x 450, not blank" $py - "$tmp/p.png" <<'PY'
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n"
w, h, depth, ctype = struct.unpack(">IIBB", b[16:26])
assert (w, h, depth, ctype) == (1500, 450, 8, 2), (w, h, depth, ctype)
i, idat = 8, b""
while i < len(b):
    n, t = struct.unpack(">I4s", b[i:i + 8])
    if t == b"IDAT": idat += b[i + 8:i + 8 + n]
    i += 12 + n
raw = zlib.decompress(idat)
stride = 1 + 3 * w
assert len(raw) == h * stride
# filter bytes aside, count distinct values and the white share (filter 0 rows only)
rows = [raw[r * stride + 1:(r + 1) * stride] for r in range(h) if raw[r * stride] == 0]
px = b"".join(rows)
white = sum(1 for k in range(0, len(px), 3) if px[k:k + 3] == b"\xff\xff\xff")
distinct = len(set(px[k:k + 3] for k in range(0, len(px), 3)))
assert distinct >= 4 and 0.5 < white / (len(px) // 3) < 0.999, (distinct, white)
PY
"$bin" plot "$tmp/seed1" "$tmp/seed2" --out="$tmp/p.svg" > /dev/null 2>&1
check "plot: the SVG names both runs in its legend" \
  grep -q ">seed1<" "$tmp/p.svg" && grep -q ">seed2<" "$tmp/p.svg"
check "plot --csv: a header and one row per run and step, the repeated step once with its last value" \
  $py - "$tmp/p.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = [(r["run"], int(r["step"])) for r in rows]
assert len(keys) == len(set(keys)) and {r["run"] for r in rows} == {"seed1", "seed2"}
s4 = [r for r in rows if r["run"] == "seed1" and r["step"] == "4"]
assert len(s4) == 1 and float(s4[0]["loss"]) == 9.5, s4
assert any(r["valid_ndcg@10"] for r in rows) and any(r["seq_per_s"] for r in rows)
PY
"$bin" plot "$tmp/nothere" --out "$tmp/x.png" > /dev/null 2> "$tmp/e1.err"
check "plot: a missing run names its metrics.jsonl (exit 1)" [ $? = 1 ] &&
  grep -q "nothere/metrics.jsonl" "$tmp/e1.err" || cat "$tmp/e1.err"
"$bin" plot "$tmp/seed1" --out "$tmp/x.gif" > /dev/null 2> "$tmp/e2.err"
check "plot: --out must end in .png or .svg (exit 2)" [ $? = 2 ] || cat "$tmp/e2.err"
absbin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
PATH=/nonexistent "$absbin" plot "$tmp/seed1" --out "$tmp/x.png" > /dev/null 2> "$tmp/e3.err"
check "plot: without gnuplot, a message naming it and the package (exit 1)" [ $? = 1 ] &&
  grep -q "gnuplot, which is not installed" "$tmp/e3.err" && grep -q "gnuplot-nox" "$tmp/e3.err" ||
  cat "$tmp/e3.err"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
