#!/usr/bin/env bash
# blin_ablation.sh: Blin's ablations on Amazon Beauty (README, "Blin as
# built"): configs/blin-beauty.json with 3 seeds (1, 2, 3) of six variants,
#   blin    the config as it is (two RandomPad views, lambda = 2)
#   bkl0    train.bkl_weight=0 (no KL: the mean of the two views' CEs; the
#           paper's Blin-BKL)
#   nopad   train.augment=none (two views that differ by dropout only; the
#           paper's Blin-ZC, without its cropping)
#   linrec  one view of linrec's `linrec` kind, no RandomPad, no KL
#   nodwc   model.attention=efficient (Blin's attention without the
#           convolution, the same key mask; the paper's Blin-DWC)
#   softmax model.attention=softmax (causal softmax under the same key mask;
#           the paper's Blin-D)
# each trained to its early stop (1 rank, 1 thread per run), then tested
# under full ranking, uni100 and pop100 (history excluded). A benchmark of
# hours (an epoch of Beauty is 514 steps), not a test: `run` can be stopped
# with SIGTERM (the run in progress writes its checkpoint, exit 75) and
# started again (finished runs are skipped, the stopped one resumes).
#
# Usage: blin_ablation.sh LINREC_BINARY SOURCE_DIR BEAUTY_FILE OUT_DIR [run] [report]
#   BEAUTY_FILE: the SASRec-format Beauty file (user item per line)
#   run: train what is missing; report: evaluate the finished runs (cached in
#   OUT_DIR/V-S/test-MODE.json) and print per variant and protocol the mean
#   and standard deviation over seeds of NDCG@10 and Recall@10, and whether
#   each ordering of the paper holds by more than one standard deviation.
#   Default: run report.
# Environment: SEEDS (default "1 2 3") limits `run` to some seeds, so that two
# instances can train side by side on two cores (SEEDS=1 and SEEDS="2 3");
# `report` always reads every seed's runs.
set -uo pipefail
mkdir -p "$4" || exit 1
bin=$(realpath "$1") src=$(realpath "$2") data=$(realpath "$3") out=$(realpath "$4")
shift 4
whats=${*:-run report}
export OPENBLAS_NUM_THREADS=1
seeds=(1 2 3)
read -r -a run_seeds <<< "${SEEDS:-1 2 3}"
variants=(blin bkl0 nopad linrec nodwc softmax)
# Runs start in the data file's folder with data.path its bare name (the
# config's own form), so the config, and with it a checkpoint's config hash,
# does not depend on where the file lives.
cd "$(dirname "$data")" || exit 1
data=$(basename "$data")

# sets V: the --set options of variant V
sets() {
  case $1 in
    blin) ;;
    bkl0) echo "--set train.bkl_weight=0" ;;
    nopad) echo "--set train.augment=none" ;;
    linrec) echo "--set model.attention=linrec --set train.views=1 --set train.augment=none --set train.bkl_weight=0" ;;
    nodwc) echo "--set model.attention=efficient" ;;
    softmax) echo "--set model.attention=softmax" ;;
  esac
}

done_run() { [ -f "$1/metrics.jsonl" ] && grep -q '"split":"test"' "$1/metrics.jsonl"; }

run() {
  for s in "${run_seeds[@]}"; do
    case " ${seeds[*]} " in *" $s "*) ;; *) echo "blin_ablation.sh: SEEDS: $s is not one of ${seeds[*]}" >&2; exit 2 ;; esac
    for v in "${variants[@]}"; do
      local dir=$out/$v-$s resume=()
      done_run "$dir" && continue
      ls -d "$dir"/checkpoints/step-* > /dev/null 2>&1 && resume=(--resume latest)
      echo "blin_ablation.sh: training $v seed $s (log $dir.log)" >&2
      # shellcheck disable=SC2046
      "$bin" train --config "$src/configs/blin-beauty.json" --set data.path="$data" \
        --set train.seed="$s" --set train.threads=1 --set train.checkpoint.every_epochs=1 \
        --set train.checkpoint.keep_last=1 $(sets "$v") --out "$dir" "${resume[@]}" >> "$dir.log" 2>&1
      local rc=$?
      [ $rc = 75 ] && { echo "blin_ablation.sh: stopped during $v seed $s; run again to resume" >&2; exit 75; }
      [ $rc = 0 ] || { echo "blin_ablation.sh: $v seed $s failed (exit $rc; $dir.log)" >&2; exit 1; }
    done
  done
}

report() {
  for s in "${seeds[@]}"; do
    for v in "${variants[@]}"; do
      local dir=$out/$v-$s
      done_run "$dir" || continue
      for mode in full uni100 pop100; do
        [ -s "$dir/test-$mode.json" ] && continue
        # shellcheck disable=SC2046
        "$bin" eval --config "$src/configs/blin-beauty.json" --set data.path="$data" \
          $(sets "$v") --set eval.mode=$mode --model "$dir" --split test \
          > "$dir/test-$mode.json.tmp" 2> "$dir/test-$mode.log" &&
          mv "$dir/test-$mode.json.tmp" "$dir/test-$mode.json" ||
          { echo "blin_ablation.sh: eval $v seed $s $mode failed ($dir/test-$mode.log)" >&2; exit 1; }
      done
    done
  done
  python3 - "$out" "${seeds[*]}" "${variants[*]}" <<'PY'
import json, os, statistics, sys
out, seeds, variants = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def metrics(v, s, mode):
    f = os.path.join(out, "%s-%s" % (v, s), "test-%s.json" % mode)
    if not os.path.exists(f):
        return None
    d = json.loads(open(f).read().strip().splitlines()[-1])
    return d["ndcg@10"], d["recall@10"]
for mode in ("full", "uni100", "pop100"):
    print("== %s (test, history excluded; mean +- std over the seeds present)" % mode)
    stat = {}
    for v in variants:
        got = [m for m in (metrics(v, s, mode) for s in seeds) if m]
        if not got:
            print("  %-7s no finished run" % v)
            continue
        n = [g[0] for g in got]; r = [g[1] for g in got]
        sd = statistics.stdev(n) if len(n) > 1 else float("nan")
        stat[v] = (statistics.mean(n), sd, len(n))
        print("  %-7s NDCG@10 %.4f +- %.4f  Recall@10 %.4f  seeds %d  (%s)" % (
            v, stat[v][0], sd, statistics.mean(r), len(n), " ".join("%.4f" % x for x in n)))
    for a, b in (("blin", "bkl0"), ("blin", "nopad"), ("blin", "linrec"), ("blin", "nodwc"),
                 ("blin", "softmax")):
        if a in stat and b in stat:
            gap = stat[a][0] - stat[b][0]
            sd = max(stat[a][1], stat[b][1])
            verdict = "holds" if gap > sd else "does not hold"
            print("  %s > %s by more than one std: %s (gap %+.4f, std %.4f)" % (a, b, verdict, gap, sd))
PY
}

for w in $whats; do
  case $w in
    run) run ;;
    report) report ;;
    *) echo "blin_ablation.sh: unknown step '$w' (run, report)" >&2; exit 2 ;;
  esac
done
