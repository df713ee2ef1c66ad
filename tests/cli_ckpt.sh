#!/usr/bin/env bash
# cli_ckpt.sh: checkpoints and resume end to end (dist/README.md, "Checkpoints"):
#  1. stop after k steps, resume, run to the end: per-step losses and the
#     model file bit-identical to an uninterrupted run, at P = 1 (mid-epoch,
#     at an epoch's end, sampled objective) and P = 2;
#  2. resume on another number of ranks (2 -> 3, 3 -> 1, item rows re-cut):
#     per-step losses and the model file bit-identical to the uninterrupted
#     run (training does not depend on the number of ranks);
#  3. kill -9 at random moments while a checkpoint is written every step
#     (20 trials): `latest` always names a checkpoint that verifies and resumes;
#  4. damage (missing shard, truncated file, flipped byte, a manifest of
#     another run, an unsupported format version, a FIFO in place of a shard
#     or of the manifest, a manifest symlink loop, another step's copy under
#     a step's name, a flipped manifest byte, a garbled `latest`, a directory
#     named `latest`): verify names the file and the reason without ever
#     blocking, --resume latest falls back loudly (and later writes its own
#     checkpoint of the damaged step), an explicitly named damaged checkpoint
#     is an error, a changed config is a configuration error naming the
#     keys; nothing crashes;
#  5. full disk (a tiny tmpfs in a private mount namespace; skipped with the
#     reason when mounting is refused): a clear error, the previous
#     checkpoint intact and resumable;
#  6. SIGTERM to the ranks of a P = 2 run (twice: the second lands during the
#     checkpoint write) and SIGUSR1 to mpirun: exit 75, a checkpoint, and the
#     resumed run ends with the uninterrupted run's losses and model;
#     SIGTERM to mpirun itself, once and twice: Open MPI signals the ranks
#     and kills them a second later, mpirun exits 1 (as the README says),
#     `latest` verifies and the resumed run still ends bit-identical.
# Usage: cli_ckpt.sh LINREC_BINARY SOURCE_DIR SHARED_DATA_DIR
source "$(dirname "$0")/lib_cli.sh"
section() { echo "-- $1 (at ${SECONDS}s)"; }

# 300 users, 60 items: 5 steps per epoch of 64 examples; 4 epochs.
tiny=(--config "$src/configs/quickstart.json" --set data.synthetic.users=300
      --set data.synthetic.items=60 --set data.synthetic.mean_len=12 --set model.d=16
      --set model.heads=2 --set model.layers=1 --set model.inner=32 --set model.max_len=10
      --set train.batch_size=64 --set train.epochs=4 --set train.patience=0
      --set log.every_steps=1 --set log.progress=off)
mpi=(mpirun --oversubscribe --mca mpi_yield_when_idle 1)

# train NP OUT ARGS...: linrec train (under mpirun when NP > 1), log in OUT.log.
# The timeout only guards against a hang: section 6's 750-step runs took over
# 120 s on a loaded machine, and timeout's SIGTERM then stopped them with a
# checkpoint (exit 75), which read as a failed resume.
train() {
  local np=$1 out=$2; shift 2
  if [ "$np" = 1 ]; then
    timeout 600 "$bin" train "${tiny[@]}" "$@" --out "$tmp/$out" > "$tmp/$out.log" 2>&1
  else
    timeout 600 "${mpi[@]}" -np "$np" "$bin" train "${tiny[@]}" "$@" --out "$tmp/$out" \
      > "$tmp/$out.log" 2>&1
  fi
}

# same_losses REF GOT TOL: the step losses of GOT's metrics.jsonl (the last
# event of each step: a resumed run repeats the steps after its checkpoint)
# equal REF's for every step, exactly (TOL 0) or within TOL relative.
same_losses() {
  python3 - "$tmp/$1/metrics.jsonl" "$tmp/$2/metrics.jsonl" "$3" <<'PY'
import json, sys
def steps(p):
    d = {}
    for l in open(p):
        e = json.loads(l)
        if e.get("event") == "step":
            d[e["step"]] = e["loss"]
    return d
a, b, tol = steps(sys.argv[1]), steps(sys.argv[2]), float(sys.argv[3])
if not a or sorted(a) != sorted(b):
    print("  steps differ: %d vs %d" % (len(a), len(b)))
    sys.exit(1)
w = max(abs(a[k] - b[k]) / abs(a[k]) for k in a)
print("  %d steps, max relative difference %.3g" % (len(a), w))
sys.exit(0 if (w == 0 if tol == 0 else w <= tol) else 1)
PY
}
has_event() { grep -q "\"event\":\"$2\"" "$tmp/$1/metrics.jsonl" 2>/dev/null; }
# once_each DIR: after resumes, DIR/metrics.jsonl holds steps 1..N once
# each (N its last), one done line, every line whole JSON with its time;
# the lines of an attempt's steps after the checkpoint it was resumed from
# were moved to metrics.superseded.jsonl (its step lines all beyond it).
once_each() {
  python3 - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
ev = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
steps = [e["step"] for e in ev if e["event"] == "step"]
n = max(steps) if steps else 0
done = [e for e in ev if e["event"] == "done"]
resumes = [e["step"] for e in ev if e["event"] == "resume"]
sup = os.path.join(d, "metrics.superseded.jsonl")
ok = n > 0 and steps == list(range(1, n + 1)) and len(done) == 1 and all("time" in e for e in ev)
ok = ok and os.path.exists(sup) and resumes != []
if ok:
    for l in open(sup):
        try: e = json.loads(l)
        except ValueError: continue  # a line cut by the kill
        if e.get("event") == "step" and e["step"] <= min(resumes): ok = False
if not ok: print("  metrics.jsonl: steps %s, %d done lines, resumes %s" % (steps[:3] + ["..."] + steps[-3:], len(done), resumes))
sys.exit(0 if ok else 1)
PY
}

# ---- 1. bit-identical resume at the same P ----------------------------------------------
section "1. bit-identical resume at the same P"
# name np k extra-args: the uninterrupted run, the run stopped at step k
# (max_steps = k, a checkpoint every k steps), its resume.
resume_same() {
  local name=$1 np=$2 k=$3; shift 3
  train "$np" "$name-ref" --set train.checkpoint.every_steps="$k" "$@" &&
    train "$np" "$name" --set train.checkpoint.every_steps="$k" --set train.max_steps="$k" "$@" &&
    test -f "$tmp/$name/checkpoints/step-$(printf %08d "$k")/manifest.json" &&
    train "$np" "$name" --set train.checkpoint.every_steps="$k" "$@" --resume latest ||
    { tail -n 5 "$tmp/$name.log"; return 1; }
  grep -q "resume: step $k " "$tmp/$name.log" && has_event "$name" resume &&
    same_losses "$name-ref" "$name" 0 && cmp -s "$tmp/$name-ref/model.lrm" "$tmp/$name/model.lrm"
}
check "P=1: stop at step 7 (mid-epoch), resume: losses and model bit-identical" resume_same r1 1 7
check "P=1: stop at step 10 (epoch end, its validation redone), resume: bit-identical" \
  resume_same r1e 1 10
check "P=1 sampled objective (lazy Adam rows): stop at 7, resume: bit-identical" \
  resume_same r1s 1 7 --set train.objective=sampled --set train.negatives=3
check "P=2: stop at step 7, resume: losses and model bit-identical" resume_same r2 2 7 \
  --set dist.item_table=sharded
# A run that ended at step 10, resumed from its step 4: the lines about
# steps 5..10 (steps, epoch, evaluations, checkpoints, done) are superseded.
resume_back() {
  local dup=(--set train.checkpoint.every_steps=4 --set train.checkpoint.keep_last=5)
  train 1 dup "${dup[@]}" --set train.max_steps=10 &&
    train 1 dup "${dup[@]}" --resume "$tmp/dup/checkpoints/step-00000004" &&
    once_each "$tmp/dup" || { tail -n 5 "$tmp/dup.log"; return 1; }
}
check "resumed from an earlier step: metrics.jsonl holds each step and one done, the superseded lines moved out" \
  resume_back

# ---- 2. resume on another number of ranks ---------------------------------------------
section "2. resume on another number of ranks"
# 200 items: 4 blocks of the loss's item grid, so P = 1, 2, 3 cut the
# sharded table differently
recut_args=(--set data.synthetic.items=200 --set train.checkpoint.every_steps=7
            --set dist.item_table=sharded)
train 2 rc-ref "${recut_args[@]}"
recut() { # name np_first np_resume
  local name=$1 a=$2 b=$3
  train "$a" "$name" "${recut_args[@]}" --set train.max_steps=7 &&
    train "$b" "$name" "${recut_args[@]}" --resume latest || { tail -n 5 "$tmp/$name.log"; return 1; }
  grep -q "written by $a ranks: rows re-cut" "$tmp/$name.log" && same_losses rc-ref "$name" 0 &&
    cmp -s "$tmp/rc-ref/model.lrm" "$tmp/$name/model.lrm"
}
check "resume a P=2 checkpoint on P=3: losses and model bit-identical" recut p23 2 3
check "resume a P=3 checkpoint on P=1: losses and model bit-identical" recut p31 3 1

# ---- 3. kill -9 while checkpoints are written ------------------------------------------
# The checkpoint `latest` names is resumed explicitly: a kill between a
# manifest's commit and the update of `latest` leaves a newer complete
# checkpoint, which --resume latest would pick (and which is set aside here).
section "3. kill -9 while checkpoints are written"
# A checkpoint every step of a 20000-item table (about 10 MB per checkpoint).
big=(--set data.synthetic.items=20000 --set model.d=32 --set train.epochs=50 --set log.every_steps=0
     --set train.checkpoint.every_steps=1 --set train.checkpoint.keep_last=2)
RANDOM=4242
trials=0 good=0 midwrite=0
for trial in $(seq 1 20); do
  out=$tmp/kill$trial
  "$bin" train "${tiny[@]}" "${big[@]}" --out "$out" > "$out.log" 2>&1 & # no timeout: kill -9 hits linrec
  pid=$!
  for i in $(seq 1 400); do [ -f "$out/checkpoints/latest" ] && break; sleep 0.02; done
  sleep "0.$(printf %03d $((RANDOM % 600)))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  trials=$((trials + 1))
  for d in "$out"/checkpoints/step-*; do [ -f "$d/manifest.json" ] || midwrite=$((midwrite + 1)); done
  latest=$(cat "$out/checkpoints/latest" 2>/dev/null)
  s=-1
  [[ $latest =~ ^step-[0-9]+$ ]] && s=$((10#${latest#step-}))
  if [ "$s" -ge 0 ] && "$bin" ckpt verify "$out/checkpoints" > "$out.verify" 2>&1 &&
     timeout 120 "$bin" train "${tiny[@]}" "${big[@]}" --set train.max_steps=$((s + 1)) \
       --out "$out" --resume "$out/checkpoints/$latest" > "$out.resume.log" 2>&1 &&
     grep -q "\"event\":\"resume\",\"step\":$s," "$out/metrics.jsonl" &&
     has_event "kill$trial" done; then
    good=$((good + 1))
  else
    echo "  trial $trial: latest '$latest'"; cat "$out.verify"; tail -n 3 "$out.resume.log"
  fi
  rm -rf "$out"
done
echo "  $trials kills, $midwrite of them left an uncommitted checkpoint directory"
check "kill -9 during checkpoint writes: latest verifies and resumes ($good/$trials)" \
  test "$good" -eq 20

# ---- 4. damage ----------------------------------------------------------------------------
section "4. damage"
# Checkpoints at steps 2, 4, 6, 8; step 8 (the one `latest` names) is damaged.
dmg=(--set train.checkpoint.every_steps=2 --set train.checkpoint.keep_last=10)
train 1 base "${dmg[@]}" --set train.max_steps=8
train 1 other "${dmg[@]}" --set train.max_steps=8 --set train.lr=0.01
s8=step-00000008
flip() { python3 -c "
import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 0x10
open(p, 'wb').write(bytes(b))" "$1"; }
# version 3 -> 4, re-sealed: the manifest's checksum is the crc32 of every
# byte before its 8 hex digits, which end the file followed by '"\n}\n'
bump_version() { python3 -c "
import sys, zlib; p = sys.argv[1]; t = open(p).read()
t = t.replace('\"version\":\t3,', '\"version\":\t4,', 1)[:-12]
open(p, 'w').write(t + '%08x\"\n}\n' % zlib.crc32(t.encode()))" "$1"; }
# damage NAME HOW EXPECTED-REASON-REGEX
damage() {
  local name=$1 how=$2 re=$3 d=$tmp/$1 rc
  cp -r "$tmp/base" "$d"
  local c=$d/checkpoints/$s8
  case $how in
    missing) rm "$c/items-r0000.zst" ;;
    truncated) truncate -s 20000 "$c/dense.zst" ;;
    flipped) flip "$c/items-r0000.zst" ;;
    foreign) cp "$tmp/other/checkpoints/$s8/manifest.json" "$c/manifest.json" ;;
    version) bump_version "$c/manifest.json" ;;
    fifo) rm "$c/items-r0000.zst" && mkfifo "$c/items-r0000.zst" ;;
    manififo) rm "$c/manifest.json" && mkfifo "$c/manifest.json" ;;
    loop) rm "$c/manifest.json" && ln -s manifest.json "$c/manifest.json" ;;
    renamed) rm -r "$c" && cp -r "$d/checkpoints/step-00000002" "$c" ;;
  esac
  # (timeouts: a FIFO must never be opened for a blocking read)
  timeout 60 "$bin" ckpt verify "$c" > "$d.verify" 2>&1
  rc=$?
  check "$name: verify exits 1 naming the file and the reason" \
    sh -c "[ $rc -eq 1 ] && grep -Eq '$re' '$d.verify'" || cat "$d.verify"
  timeout 120 "$bin" train "${tiny[@]}" "${dmg[@]}" --out "$d" --resume "$c" > "$d.explicit" 2>&1
  rc=$?
  check "$name: --resume of it is an error (exit $rc) naming the file" \
    sh -c "[ $rc -eq 1 ] && grep -q '$s8' '$d.explicit' && grep -Eq '$re' '$d.explicit'" ||
    cat "$d.explicit"
  # resumed at step 6, the run writes its own step 8: the damaged one must
  # have been set aside, whatever its damage
  timeout 120 "$bin" train "${tiny[@]}" "${dmg[@]}" --set train.max_steps=9 --out "$d" \
    --resume latest > "$d.latest" 2>&1
  rc=$?
  check "$name: --resume latest falls back to step 6 and says so (exit $rc)" \
    sh -c "[ $rc -eq 0 ] && grep -q 'skipped $s8' '$d.latest' &&
           grep -q 'falling back to .*step-00000006' '$d.latest' &&
           grep -q '\"event\":\"resume\",\"step\":6,' '$d/metrics.jsonl'" || tail -n 5 "$d.latest"
}
damage missing missing 'items-r0000.zst.*missing'
damage truncated truncated 'dense.zst.*(truncated|bytes, manifest says)'
damage flipped flipped 'items-r0000.zst: byte [0-9]+: .*(crc|checksum|zstd|corrupt)'
damage foreign foreign 'r0000.zst|dense.zst'
damage version version 'manifest.json.*format version 4'
damage fifo fifo 'items-r0000.zst: byte 0: .*is a FIFO, not a regular file'
damage manififo manififo 'manifest.json: byte 0: is a FIFO, not a regular file'
damage loop loop 'manifest.json: Too many levels of symbolic links'
damage renamed renamed 'manifest.json: byte 0: the manifest records step 2, but its directory is named step-00000008'
# Every manifest byte is under the checksum: bytes 2 and 8 (whitespace, a key).
for at in 2 8; do
  cp -r "$tmp/base" "$tmp/mbyte$at"
  python3 -c "
import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[int(sys.argv[2])] ^= 0x01
open(p, 'wb').write(bytes(b))" "$tmp/mbyte$at/checkpoints/$s8/manifest.json" "$at"
  "$bin" ckpt verify "$tmp/mbyte$at/checkpoints/$s8" > "$tmp/mbyte$at.log" 2>&1
  rc=$?
  check "manifest byte $at flipped: verify exits 1 (exit $rc)" \
    sh -c "[ $rc -eq 1 ] && grep -q 'manifest.json: byte' '$tmp/mbyte$at.log'" ||
    cat "$tmp/mbyte$at.log"
done

# A garbled `latest`: ignored, with a message; the newest valid one is used.
cp -r "$tmp/base" "$tmp/garbled"
echo "not a step" > "$tmp/garbled/checkpoints/latest"
"$bin" train "${tiny[@]}" "${dmg[@]}" --set train.max_steps=9 --out "$tmp/garbled" \
  --resume latest > "$tmp/garbled.log" 2>&1
check "a garbled latest is ignored with a message, the newest valid checkpoint resumes" \
  sh -c "[ $? -eq 0 ] && grep -q 'ignoring .latest.' '$tmp/garbled.log' &&
         grep -q '\"event\":\"resume\",\"step\":8,' '$tmp/garbled/metrics.jsonl'"

# A directory named `latest`: ignored with a message; the newest valid
# checkpoint resumes, and the next `latest` written moves the directory aside.
cp -r "$tmp/base" "$tmp/latdir"
rm "$tmp/latdir/checkpoints/latest" && mkdir "$tmp/latdir/checkpoints/latest"
timeout 60 "$bin" ckpt verify "$tmp/latdir/checkpoints" > "$tmp/latdir.verify" 2>&1
check "ckpt verify of a directory whose latest is a directory: exit 1 saying so" \
  sh -c "[ $? -eq 1 ] && grep -q 'latest: byte 0: is a directory' '$tmp/latdir.verify'"
timeout 120 "$bin" train "${tiny[@]}" "${dmg[@]}" --set train.max_steps=9 --out "$tmp/latdir" \
  --resume latest > "$tmp/latdir.log" 2>&1
check "a directory named latest: ignored loudly, step 8 resumes, latest rewritten (exit $?)" \
  sh -c "[ $? -eq 0 ] && grep -q 'ignoring .latest.: .*is a directory' '$tmp/latdir.log' &&
         grep -q '\"event\":\"resume\",\"step\":8,' '$tmp/latdir/metrics.jsonl' &&
         grep -qx '$s8' '$tmp/latdir/checkpoints/latest' &&
         ls -d '$tmp/latdir/checkpoints/latest.not-a-file-'* > /dev/null" || tail -n 5 "$tmp/latdir.log"

# Another config: a configuration error (exit 2) naming the keys; resume-free keys may change.
cp -r "$tmp/base" "$tmp/cfg"
"$bin" train "${tiny[@]}" "${dmg[@]}" --set train.lr=0.005 --set model.dropout=0.1 \
  --out "$tmp/cfg" --resume latest > "$tmp/cfg.log" 2>&1
rc=$?
check "resume with another config: exit 2 naming train.lr and model.dropout (exit $rc)" \
  sh -c "[ $rc -eq 2 ] && grep -q 'train.lr (checkpoint 0.002, this run 0.005)' '$tmp/cfg.log' &&
         grep -q 'model.dropout (checkpoint 0.2, this run 0.1)' '$tmp/cfg.log'"
"$bin" train "${tiny[@]}" "${dmg[@]}" --set train.max_steps=9 --set train.epochs=5 \
  --set log.every_steps=2 --set eval.batch_size=7 --out "$tmp/cfg" --resume latest \
  > "$tmp/cfg2.log" 2>&1
check "resume-free keys (max_steps, epochs, log.*, eval.batch_size) may change" test $? -eq 0
# A fresh run refuses a directory with checkpoints (no silent mixing).
"$bin" train "${tiny[@]}" "${dmg[@]}" --out "$tmp/cfg" > "$tmp/fresh.log" 2>&1
rc=$?
check "a fresh run into a checkpoint directory in use: exit 2 with a HINT (exit $rc)" \
  sh -c "[ $rc -eq 2 ] && grep -q 'already holds checkpoints' '$tmp/fresh.log' &&
         grep -q 'HINT: continue that run with --resume latest' '$tmp/fresh.log'"
"$bin" ckpt inspect "$tmp/base/checkpoints" > "$tmp/inspect.log" 2>&1
check "ckpt inspect prints the step, the shards, the training state and the config" \
  sh -c "[ $? -eq 0 ] && grep -q 'checkpoint   step 8 (epoch 2' '$tmp/inspect.log' &&
         grep -q 'items-r0000.zst' '$tmp/inspect.log' && grep -q '^training     best epoch 1' '$tmp/inspect.log' &&
         grep -q '\"train.lr\":0.002' '$tmp/inspect.log'"
"$bin" ckpt verify "$tmp/base/checkpoints/step-00000006" > /dev/null 2>&1
check "ckpt verify of a good checkpoint exits 0" test $? -eq 0
"$bin" ckpt verify "$tmp/nowhere" > "$tmp/nowhere.log" 2>&1
check "ckpt verify of a missing directory exits 1" test $? -eq 1

# ---- 5. full disk -----------------------------------------------------------------------
section "5. full disk"
# A tmpfs with room for 1.5 checkpoints: the second write fails.
one=$(du -sk "$tmp/base/checkpoints/step-00000002" | cut -f1)
size=$(( (one * 3 / 2 + 3) / 4 * 4 ))k
mkdir -p "$tmp/mnt"
if unshare -m true 2>/dev/null; then
  unshare -m bash -c "
    mount -t tmpfs -o size=$size tmpfs '$tmp/mnt' || exit 3
    '$bin' train $(printf '%q ' "${tiny[@]}") --set train.checkpoint.every_steps=2 \
      --set train.checkpoint.dir='$tmp/mnt' --out '$tmp/full' > '$tmp/full.log' 2>&1
    echo \$? > '$tmp/full.rc'
    cat '$tmp/mnt/latest' > '$tmp/full.latest'
    '$bin' ckpt verify '$tmp/mnt' > '$tmp/full.verify' 2>&1; echo \$? > '$tmp/full.vrc'
    '$bin' train $(printf '%q ' "${tiny[@]}") --set train.checkpoint.every_steps=2 \
      --set train.checkpoint.dir='$tmp/mnt' --set train.max_steps=3 --out '$tmp/full' \
      --resume latest > '$tmp/full.resume' 2>&1; echo \$? > '$tmp/full.rrc'"
  mrc=$?
  if [ $mrc -eq 3 ]; then
    echo "full disk: SKIPPED: cannot mount a tmpfs in a private mount namespace"
  else
    check "full disk: the write fails (exit 1) with 'No space left on device' and a HINT" \
      sh -c "[ \"\$(cat '$tmp/full.rc')\" = 1 ] && grep -q 'No space left on device' '$tmp/full.log' &&
             grep -q 'HINT: free space' '$tmp/full.log'"
    check "full disk: latest still names step 2, which verifies and resumes" \
      sh -c "grep -q step-00000002 '$tmp/full.latest' && [ \"\$(cat '$tmp/full.vrc')\" = 0 ] &&
             [ \"\$(cat '$tmp/full.rrc')\" = 0 ] && grep -q 'resume: step 2 ' '$tmp/full.resume'"
  fi
else
  echo "full disk: SKIPPED: unshare -m is refused here (needs root for a private tmpfs)"
fi

# ---- 6. SIGTERM / SIGUSR1 at P = 2 ------------------------------------------------------
section "6. SIGTERM / SIGUSR1 at P = 2"
long=(--set train.epochs=150 --set dist.item_table=sharded --set train.checkpoint.every_steps=100)
train 2 sig-ref "${long[@]}"
# stop NAME HOW: start, wait for 30 steps, signal, expect exit 75.
ck_extra=()
stop() {
  local name=$1 how=$2 out=$tmp/$1
  "${mpi[@]}" -np 2 "$bin" train "${tiny[@]}" "${long[@]}" "${ck_extra[@]}" --out "$out" > "$out.log" 2>&1 &
  local mp=$! n=0 # mpirun itself (its children are the ranks)
  for i in $(seq 1 1000); do
    n=$(grep -c '"event":"step"' "$out/metrics.jsonl" 2>/dev/null)
    [ "${n:-0}" -ge 30 ] && break
    sleep 0.01
  done
  case $how in
    term)
      local ranks
      ranks=$(pgrep -P "$mp")
      kill -TERM $ranks
      sleep 0.01
      kill -TERM $ranks 2>/dev/null ;; # the second signal lands during the checkpoint
    usr1) kill -USR1 "$mp" ;;
    mpirun-term) kill -TERM "$mp" ;;
    mpirun-term2) kill -TERM "$mp"; sleep 0.3; kill -TERM "$mp" 2>/dev/null ;;
  esac
  for i in $(seq 1 1200); do kill -0 "$mp" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$mp" 2>/dev/null && { echo "  $name: still running after 120 s: killed"; kill -9 $(pgrep -P "$mp") "$mp"; }
  wait "$mp"
  echo $? > "$out.rc"
}
sig_resumed() { # how: resume the stopped run at P = 2 and compare with the uninterrupted one
  train 2 "sig-$1" "${long[@]}" --resume latest || { tail -n 5 "$tmp/sig-$1.log"; return 1; }
  grep -q "stopped on signal" "$tmp/sig-$1.log" && return 1 # the resume must finish
  same_losses sig-ref "sig-$1" 0 && cmp -s "$tmp/sig-ref/model.lrm" "$tmp/sig-$1/model.lrm"
}
for how in term usr1; do
  stop "sig-$how" "$how"
  rc=$(cat "$tmp/sig-$how.rc")
  check "P=2 SIG${how^^}: exit 75 after a committed checkpoint (exit $rc)" \
    sh -c "[ $rc -eq 75 ] && grep -q '\"event\":\"stopped\"' '$tmp/sig-$how/metrics.jsonl' &&
           grep -q '\"reason\":\"signal\"' '$tmp/sig-$how/metrics.jsonl' &&
           '$bin' ckpt verify '$tmp/sig-$how/checkpoints' > /dev/null"
  check "P=2 SIG${how^^}: the resumed run ends with the uninterrupted run's losses and model" \
    sig_resumed "$how"
done
# (a checkpoint every 10 steps: mpirun may kill the ranks before theirs)
ck_extra=(--set train.checkpoint.every_steps=10)
for how in mpirun-term mpirun-term2; do
  stop "sig-$how" "$how"
  rc=$(cat "$tmp/sig-$how.rc")
  check "P=2 SIGTERM to mpirun $([ $how = mpirun-term2 ] && echo twice || echo once): exit 1, latest verifies (exit $rc)" \
    sh -c "[ $rc -eq 1 ] && '$bin' ckpt verify '$tmp/sig-$how/checkpoints' > /dev/null"
  check "P=2 $how: the resumed run ends with the uninterrupted run's losses and model" \
    sig_resumed "$how"
done

echo "$pass passed, $fail failed (${SECONDS}s)"
[ "$fail" -eq 0 ]
