#!/usr/bin/env bash
# cli_jobcheck.sh: the ranks of a job check that they run the same job, and
# a resume checks that it continues on the same data (dist/jobcheck.h):
#  1. MPMD launches (`mpirun -np 1 linrec ... : -np 1 linrec ...`) whose
#     ranks differ in the config (train.seed, data.synthetic.items,
#     train.objective: silent training, heap corruption and a hang before),
#     in --out, or in the binary: exit 2 within 20 s with one message naming
#     rank 1 and what differs;
#  2. ranks whose data files differ (the same relative data.path in other
#     working directories): exit 2 naming the data and both fingerprints;
#  3. ranks that read different checkpoints when resuming: exit 2;
#  4. a resume onto changed data (every user's timestamps reversed: same
#     users, items and counts) is a configuration error (exit 2) naming both
#     fingerprints; with --allow-data-change it resumes and says so; the
#     manifest and `ckpt inspect` show the data fingerprint.
# Usage: cli_jobcheck.sh LINREC_BINARY SOURCE_DIR SHARED_DATA_DIR
source "$(dirname "$0")/lib_cli.sh"
tiny=(--set data.synthetic.users=200 --set data.synthetic.items=50 --set data.synthetic.mean_len=10
      --set model.d=16 --set model.heads=2 --set model.layers=1 --set model.inner=32
      --set model.max_len=8 --set train.batch_size=32 --set log.progress=off --set train.max_steps=6)
mpi=(timeout 60 mpirun --oversubscribe --mca mpi_yield_when_idle 1)
# expect2 NAME LOG REGEX: the run (rc in $rc, seconds in $took) exited 2 within 20 s naming REGEX.
expect2() {
  if [ "$rc" = 2 ] && [ "$took" -le 20 ] && [ "$(grep -c 'does not run the same job\|other training data' "$2")" = 1 ] &&
     grep -Eq "$3" "$2"; then ok "$1 (exit 2, ${took}s)"
  else bad "$1 (exit $rc, ${took}s)"; cat "$2"; fi
}
mpmd() { # name rank1-extra-args...
  local name=$1; shift
  local start=$SECONDS
  (cd "$tmp" && "${mpi[@]}" -np 1 "$bin" train --config "$src/configs/quickstart.json" "${tiny[@]}" --out a \
     : -np 1 "${rank1_bin:-$bin}" train --config "$src/configs/quickstart.json" "${tiny[@]}" --out a "$@") \
    > "$tmp/$name.log" 2>&1
  rc=$? took=$((SECONDS - start))
}

# 1. MPMD launches with ranks that differ
mpmd seed --set train.seed=7
expect2 "MPMD, rank 1 with train.seed=7" "$tmp/seed.log" 'rank 1 of 2 .*the config differs: train.seed \(rank 0 42, rank 1 7\)'
mpmd items --set data.synthetic.items=60
expect2 "MPMD, rank 1 with data.synthetic.items=60" "$tmp/items.log" 'data.synthetic.items \(rank 0 50, rank 1 60\)'
mpmd objective --set train.objective=sampled
expect2 "MPMD, rank 1 with train.objective=sampled" "$tmp/objective.log" 'train.objective \(rank 0 "ce", rank 1 "sampled"\)'
mpmd out --out b
expect2 "MPMD, rank 1 with another --out" "$tmp/out.log" 'the command differs: rank 0: train --out a .*rank 1: train --out b'
cp "$bin" "$tmp/linrec2" && printf 'x' >> "$tmp/linrec2"
rank1_bin=$tmp/linrec2 mpmd binary
expect2 "MPMD, rank 1 running another binary" "$tmp/binary.log" 'the linrec binary differs: rank 0: .*crc32 [0-9a-f]{8}.*; rank 1: .*linrec2 \([0-9]+ bytes'

# 2. The same relative data.path names different files on the two ranks.
mkdir -p "$tmp/wa" "$tmp/wb"
python3 - "$tmp/wa/r.dat" "$tmp/wb/r.dat" <<'PY'
import sys
for k, p in enumerate(sys.argv[1:]):
    with open(p, "w") as f:
        for u in range(1, 121):
            for j in range(8):
                f.write("%d::%d::5::%d\n" % (u, (u * 7 + j * (3 + k * (u == 5))) % 40 + 1, 1000 + j))
PY
ml=(--config "$src/configs/quickstart.json" "${tiny[@]}" --set data.format=movielens --set data.path=r.dat)
start=$SECONDS
"${mpi[@]}" -np 1 -wdir "$tmp/wa" "$bin" train "${ml[@]}" --out "$tmp/d" : -np 1 -wdir "$tmp/wb" "$bin" train "${ml[@]}" \
  --out "$tmp/d" > "$tmp/data.log" 2>&1
rc=$? took=$((SECONDS - start))
expect2 "ranks whose data files differ" "$tmp/data.log" \
  'rank 1 of 2 .*the data loaded from r.dat differs: rank 0: 120 users, .* content hash [0-9a-f]{16}; rank 1: 120 users'

# 3. Ranks that see different checkpoints (the same relative --out, other files).
for w in wa wb; do
  (cd "$tmp/$w" && "$bin" train "${ml[@]}" --set train.checkpoint.every_steps=3 --out o > "$tmp/$w.log" 2>&1) ||
    { bad "training in $w"; cat "$tmp/$w.log"; }
done
start=$SECONDS
"${mpi[@]}" -np 1 -wdir "$tmp/wa" "$bin" train "${ml[@]}" --set train.max_steps=8 --set train.checkpoint.every_steps=3 \
  --out o --resume latest : -np 1 -wdir "$tmp/wb" "$bin" train "${ml[@]}" --set train.max_steps=8 \
  --set train.checkpoint.every_steps=3 --out o --resume latest > "$tmp/ck.log" 2>&1
rc=$? took=$((SECONDS - start))
expect2 "ranks that read different checkpoints" "$tmp/ck.log" \
  'the checkpoint read from o/checkpoints/step-00000006 differs: rank 0: step 6 .*data hash [0-9a-f]{16}; rank 1: step 6'

# 4. Resume onto changed data: the data file is rewritten in place.
cp -r "$tmp/wa" "$tmp/wr"
python3 - "$tmp/wa/r.dat" "$tmp/wr/r.dat" <<'PY'
import sys
lines = [l.split("::") for l in open(sys.argv[1])]
with open(sys.argv[2], "w") as f:
    for u, i, r, t in lines:
        f.write("%s::%s::%s::%d\n" % (u, i, r, 3000 - int(t)))
PY
check "the manifest records the data fingerprint" \
  grep -Eq '"data":[[:space:]]*\{' "$tmp/wr/o/checkpoints/step-00000006/manifest.json"
"$bin" ckpt inspect "$tmp/wr/o/checkpoints" > "$tmp/inspect.log" 2>&1
check "ckpt inspect prints it" grep -Eq '^data +120 users, [0-9]+ items, 960 interactions, content hash' "$tmp/inspect.log"
rev=("${ml[@]}" --set train.max_steps=8 --set train.checkpoint.every_steps=3 --out o --resume latest)
start=$SECONDS
(cd "$tmp/wr" && "$bin" train "${rev[@]}") > "$tmp/rev.log" 2>&1
rc=$? took=$((SECONDS - start))
expect2 "resume onto reversed timestamps (same counts)" "$tmp/rev.log" \
  'step-00000006: the checkpoint was written on other training data: checkpoint: 120 users, .*; this run: 120 users, .*same counts: the interactions or their order differ'
check "its message has a HINT naming --allow-data-change" grep -q 'HINT: .*--allow-data-change' "$tmp/rev.log"
(cd "$tmp/wr" && "$bin" train "${rev[@]}" --allow-data-change) > "$tmp/rev2.log" 2>&1
rc=$?
check "--allow-data-change resumes on the new data and says so (exit $rc)" \
  sh -c "[ $rc = 0 ] && grep -q 'allow-data-change: the training data differs' '$tmp/rev2.log' &&
         grep -q '\"event\":\"resume\",\"step\":6,' '$tmp/wr/o/metrics.jsonl'" || cat "$tmp/rev2.log"
"$bin" eval --model pop --allow-data-change > "$tmp/opt.log" 2>&1
check "--allow-data-change is an option of train only (exit $?)" grep -q 'is an option of train' "$tmp/opt.log"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
