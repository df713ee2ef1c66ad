#!/usr/bin/env bash
# bench_peer.sh: linrec against the PyTorch peer (../shared/bench/torch_peer.py
# beside the checkout, or PEER) on this machine, back to back A B A B, and the
# ratios of the speed targets. A benchmark, not a test: it prints figures.
# The peer needs its script and Debian's python3-torch
# (`apt-get install python3-torch`; only for benchmarking, linrec does not
# depend on either); without them `smoke` skips the peer with a message and
# the other modes stop with one.
#
# Usage: bench_peer.sh LINREC_BINARY SOURCE_DIR [what...]
#   what: last (paper config, linrec, last position: 2 ranks x 1 thread and
#         1 rank x 2 threads vs the peer with 2 threads), causal (linrec_causal,
#         all positions), scaling (linrec at N = 200 and 3200, softmax at
#         3200), recgrela (the released RecGRELA ML-1M model, rela with the
#         last position, 2 ranks x 1 thread and 1 rank x 2 threads, and
#         rela_causal with all positions, vs tests/recgrela_peer.py, the
#         PyTorch port of the released code, with 2 threads), bf16
#         (train.precision=bf16 against fp32 and the peer's --bf16 autocast,
#         the paper config and linrec_causal all positions), smoke (a tiny
#         run of every linrec path and, when torch and the peer script are
#         there, of the peer; what ctest runs). Default: last causal scaling.
# Environment: PEER (path of torch_peer.py), STEPS (timed steps, default 8).
set -euo pipefail
bin=$1
src=$2
shift 2
whats=${*:-last causal scaling}
peer=${PEER:-$src/../shared/bench/torch_peer.py}
rpeer=$src/tests/recgrela_peer.py
steps=${STEPS:-8}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cores=$(nproc)
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
# The peer runs when torch is installed and its script is there; why_no_peer
# says what is missing otherwise.
why_no_peer=""
[ -f "$peer" ] || why_no_peer="the PyTorch peer script $peer is absent (it lives beside the checkout; set PEER to its path)"
[ $have_torch = 1 ] || why_no_peer="python3-torch is not installed"
need_peer() { [ -z "$why_no_peer" ] || { echo "bench_peer.sh: $why_no_peer: no peer" >&2; exit 1; }; }

# linrec NAME RANKS THREADS [--set k=v]...: one `linrec bench` JSON line into $tmp/NAME.json
linrec() {
  local name=$1 np=$2 th=$3
  shift 3
  # Open MPI binds each of up to 2 ranks to one core: a rank with several
  # threads needs --bind-to none to use more than that core.
  local bind=()
  [ "$th" -gt 1 ] && bind=(--bind-to none)
  OPENBLAS_NUM_THREADS=$th mpirun -np "$np" "${bind[@]}" --oversubscribe --mca mpi_yield_when_idle 1 \
    -x OPENBLAS_NUM_THREADS "$bin" bench --config "$src/configs/bench.json" \
    --set bench.steps="$steps" --set train.threads="$th" "$@" > "$tmp/$name.json" 2> "$tmp/$name.log" ||
    { cat "$tmp/$name.log" >&2; return 1; }
  line "linrec $name" "$tmp/$name.json"
}
# peer NAME [args...]: one torch_peer.py JSON line into $tmp/NAME.json
# (PEER_SCRIPT=FILE: another peer with the same command line)
peer() {
  local name=$1
  shift
  /usr/bin/python3 "${PEER_SCRIPT:-$peer}" --steps "$steps" "$@" > "$tmp/$name.json"
  line "peer   $name" "$tmp/$name.json"
}
line() {
  python3 - "$1" "$2" <<'PY'
import json, sys
d = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
extra = ""
if "gflops" in d:
    extra = "  %.1f GFLOP/s = %.0f%% of sgemm peak %.1f" % (d["gflops"], 100 * d["peak_frac"], d["sgemm_peak_gflops"])
print("%-34s %8.1f seq/s  peak RSS %7.1f MiB%s" % (sys.argv[1], d["seq_per_s"], d["peak_rss_mib"], extra))
PY
}
# ratio A B LABEL TARGET: best of A's runs over best of B's runs (seq/s)
ratio() {
  python3 - "$tmp" "$1" "$2" "$3" "$4" <<'PY'
import glob, json, sys
tmp, a, b, label, target = sys.argv[1:]
def best(n):
    return max(json.loads(open(f).read().strip().splitlines()[-1])["seq_per_s"]
               for f in glob.glob("%s/%s.*.json" % (tmp, n)))
r = best(a) / best(b)
print("  %-58s %6.2f  (target %s)" % (label, r, target))
PY
}
rss_ratio() {
  python3 - "$tmp" "$1" "$2" <<'PY'
import glob, json, sys
tmp, a, b = sys.argv[1:]
def rss(n):
    return max(json.loads(open(f).read().strip().splitlines()[-1])["peak_rss_mib"]
               for f in glob.glob("%s/%s.*.json" % (tmp, n)))
print("  %-58s %6.2f  (target <= 0.33)" % ("peak RSS linrec (largest rank) / peer", rss(a) / rss(b)))
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%F)"
for what in $whats; do
  case $what in
  last)
    echo "== linrec, last position, paper config (d=128, 8 heads, 2 layers, inner 256, N=200, 3416 items, batch 256)"
    need_peer
    for rep in 1 2; do
      linrec "r2t1.$rep" 2 1
      linrec "r1t2.$rep" 1 2
      peer "peer_last.$rep" --attention linrec --positions last --threads "$cores"
    done
    ratio r2t1 peer_last "seq/s linrec 2 ranks x 1 thread / peer" ">= 2"
    ratio r1t2 peer_last "seq/s linrec 1 rank x 2 threads / peer" ">= 2"
    rss_ratio r2t1 peer_last
    python3 - "$tmp" <<'PY'
import glob, json, sys
for n in ("r2t1", "r1t2"):
    d = max((json.loads(open(f).read()) for f in glob.glob("%s/%s.*.json" % (sys.argv[1], n))),
            key=lambda d: d["seq_per_s"])
    print("  %-58s %6.2f  (target >= 0.50)" % ("GFLOP/s / sgemm peak, " + n, d["peak_frac"]))
    print("    phases (s/step): " + ", ".join("%s %.3f" % kv for kv in d["phases"].items()))
PY
    ;;
  causal)
    echo "== linrec_causal, all positions, paper config"
    need_peer
    for rep in 1 2; do
      linrec "causal.$rep" 2 1 --set model.attention=linrec_causal --set train.positions=all
      peer "peer_causal.$rep" --attention linrec_causal --positions all --threads "$cores"
    done
    ratio causal peer_causal "seq/s linrec_causal all positions / peer" ">= 3"
    ;;
  bf16)
    echo "== train.precision=bf16 against fp32 and the peer's bf16 autocast (paper config, last position; and linrec_causal, all positions)"
    need_peer
    for rep in 1 2; do
      linrec "f32.$rep" 2 1
      linrec "b16.$rep" 2 1 --set train.precision=bf16
      linrec "b16t2.$rep" 1 2 --set train.precision=bf16
      peer "peer_f32.$rep" --attention linrec --positions last --threads "$cores"
      peer "peer_b16.$rep" --attention linrec --positions last --threads "$cores" --bf16
      linrec "cf32.$rep" 2 1 --set model.attention=linrec_causal --set train.positions=all
      linrec "cb16.$rep" 2 1 --set model.attention=linrec_causal --set train.positions=all \
        --set train.precision=bf16
      peer "peer_cb16.$rep" --attention linrec_causal --positions all --threads "$cores" --bf16
    done
    ratio b16 f32 "seq/s linrec bf16 / linrec fp32 (2 ranks x 1 thread)" ">= 2"
    ratio b16t2 f32 "seq/s linrec bf16 1 rank x 2 threads / linrec fp32 2 x 1" ">= 2"
    ratio b16 peer_b16 "seq/s linrec bf16 / peer --bf16" ">= 3"
    ratio b16 peer_f32 "seq/s linrec bf16 / peer fp32" ">= 5"
    ratio cb16 cf32 "seq/s linrec_causal bf16 / fp32" ">= 2"
    ratio cb16 peer_cb16 "seq/s linrec_causal bf16 / peer --bf16" ">= 3"
    python3 - "$tmp" <<'PY'
import glob, json, sys
def rss(n):
    return max(json.loads(open(f).read())["peak_rss_mib"] for f in glob.glob("%s/%s.*.json" % (sys.argv[1], n)))
print("  %-58s %6.2f  (target <= 1)" % ("peak RSS linrec bf16 / fp32", rss("b16") / rss("f32")))
d = max((json.loads(open(f).read()) for f in glob.glob("%s/b16.*.json" % sys.argv[1])),
        key=lambda d: d["seq_per_s"])
print("  %-58s %6.2f" % ("GFLOP/s / bf16 dot-product limit, bf16 2 x 1", d["bf16_peak_frac"]))
PY
    ;;
  scaling)
    echo "== linear in N: linrec at N=200 and N=3200, softmax at N=3200 (20,000 items, batch 16, 2 ranks x 1 thread)"
    long=(--set data.synthetic.users=40 --set data.synthetic.items=20000 --set data.synthetic.mean_len=8000
          --set train.batch_size=16)
    for rep in 1 2; do
      linrec "n200.$rep" 2 1 "${long[@]}" --set model.max_len=200
      linrec "n3200.$rep" 2 1 "${long[@]}" --set model.max_len=3200
    done
    STEPS=2 steps=2 linrec "soft3200.1" 2 1 "${long[@]}" --set model.max_len=3200 \
      --set model.attention=softmax --set bench.warmup=1
    python3 - "$tmp" <<'PY'
import glob, json, sys
def best(n):
    return max(json.loads(open(f).read())["seq_per_s"] for f in glob.glob("%s/%s.*.json" % (sys.argv[1], n)))
a, b, s = best("n200") * 200, best("n3200") * 3200, best("soft3200")
print("  %-58s %6.2f  (target <= 1.5)" % ("(seq/s x N) at N=200 / at N=3200, linrec", a / b))
print("  %-58s %6.1f  (target >= 10)" % ("seq/s linrec / softmax at N=3200", best("n3200") / s))
PY
    ;;
  recgrela)
    echo "== recgrela, the released ML-1M model (d=64, 4 heads, 4 layers, inner 256, N=200, 3416 items,"
    echo "   dropout 0.1, drop_path 0.1, batch 256; linrec on configs/bench.json's synthetic data)"
    [ $have_torch = 1 ] || { echo "python3-torch is not installed: no peer" >&2; exit 1; }
    rg=(--set model.arch=recgrela --set model.d=64 --set model.heads=4 --set model.layers=4
        --set model.inner=256 --set model.dropout=0.1 --set model.drop_path=0.1)
    for rep in 1 2; do
      linrec "rg_r2t1.$rep" 2 1 "${rg[@]}" --set model.attention=rela
      linrec "rg_r1t2.$rep" 1 2 "${rg[@]}" --set model.attention=rela
      PEER_SCRIPT=$rpeer peer "rg_peer_last.$rep" --attention rela --positions last --threads "$cores"
      linrec "rg_causal.$rep" 2 1 "${rg[@]}" --set model.attention=rela_causal --set train.positions=all
      PEER_SCRIPT=$rpeer peer "rg_peer_causal.$rep" --attention rela_causal --positions all \
        --threads "$cores"
    done
    ratio rg_r2t1 rg_peer_last "seq/s recgrela rela last, 2 ranks x 1 thread / peer" ">= 3"
    ratio rg_r1t2 rg_peer_last "seq/s recgrela rela last, 1 rank x 2 threads / peer" ">= 3"
    ratio rg_causal rg_peer_causal "seq/s recgrela rela_causal all positions / peer" ">= 3"
    rss_ratio rg_r2t1 rg_peer_last
    ;;
  smoke)
    tiny=(--set data.synthetic.users=60 --set data.synthetic.items=50 --set data.synthetic.mean_len=40
          --set model.d=16 --set model.heads=2 --set model.inner=32 --set model.max_len=16
          --set train.batch_size=8 --set bench.warmup=1)
    steps=2
    linrec smoke_last 2 1 "${tiny[@]}"
    linrec smoke_causal 1 1 "${tiny[@]}" --set model.attention=linrec_causal --set train.positions=all
    linrec smoke_soft 2 1 "${tiny[@]}" --set model.attention=softmax --set train.objective=sampled \
      --set train.negatives=4
    linrec smoke_rg 2 1 "${tiny[@]}" --set model.arch=recgrela --set model.attention=rela \
      --set model.drop_path=0.1
    python3 - "$tmp" <<'PY'
import json, sys
keys = ("seq_per_s", "gflops", "sgemm_peak_gflops", "peak_rss_mib", "phases", "flops_per_seq")
phases = ("embedding", "attention", "projections", "ffn", "loss", "optimizer", "communication")
for n in ("smoke_last", "smoke_causal", "smoke_soft", "smoke_rg"):
    d = json.loads(open("%s/%s.json" % (sys.argv[1], n)).read())
    assert all(k in d for k in keys), (n, d)
    assert all(p in d["phases"] for p in phases), (n, d["phases"])
    assert d["seq_per_s"] > 0 and d["gflops"] > 0 and d["sgemm_peak_gflops"] > 0 and d["peak_rss_mib"] > 0, d
print("smoke: every bench line has its fields")
PY
    if [ -z "$why_no_peer" ]; then
      peer smoke_peer --d 16 --heads 2 --inner 32 --N 16 --items 50 --batch 8 --steps 2 --warmup 1 --threads 1
    else
      echo "smoke: $why_no_peer: peer skipped"
    fi
    if [ $have_torch = 1 ]; then # the recgrela peer is in the repository
      PEER_SCRIPT=$rpeer peer smoke_rpeer --d 16 --heads 2 --layers 2 --inner 32 --N 16 --items 50 \
        --batch 8 --steps 2 --warmup 1 --threads 1
    else
      echo "smoke: python3-torch is not installed: recgrela peer skipped"
    fi
    ;;
  *) echo "bench_peer.sh: unknown '$what' (last, causal, scaling, recgrela, smoke)" >&2; exit 2 ;;
  esac
done
