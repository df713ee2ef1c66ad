#!/usr/bin/env bash
# cli_install.sh: `cmake --install` into a fresh prefix puts linrec and
# linrec-run in PREFIX/bin and the Slurm script and configs in
# PREFIX/share/linrec; the installed binary works outside the source tree
# (a short quickstart training from the installed config, run through the
# installed linrec-run, which finds the binary beside itself); `--version`
# names the version and the git commit; `--opt=value` is `--opt value`.
# Usage: cli_install.sh LINREC_BINARY SOURCE_DIR
source "$(dirname "$0")/lib_cli.sh"
build=$(cd "$(dirname "$bin")" && pwd)
pfx=$tmp/prefix
cmake --install "$build" --prefix "$pfx" > "$tmp/install.log" 2>&1
check "cmake --install: exit 0" [ $? = 0 ] || cat "$tmp/install.log"
check "installed: bin/linrec, bin/linrec-run, share/linrec/slurm/linrec.sbatch, share/linrec/configs" \
  [ -x "$pfx/bin/linrec" ] && [ -x "$pfx/bin/linrec-run" ] &&
  [ -x "$pfx/share/linrec/slurm/linrec.sbatch" ] && [ -f "$pfx/share/linrec/configs/quickstart.json" ]
v=$("$pfx/bin/linrec" --version)
commit=$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
check "--version: 'linrec X.Y.Z (commit $commit...)' ($v)" \
  bash -c '[[ $1 =~ ^linrec\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ $2(-dirty)?\)$ ]]' _ "$v" "$commit"
mkdir "$tmp/elsewhere" && cd "$tmp/elsewhere"
PATH=/usr/bin:/bin timeout 300 "$pfx/bin/linrec-run" -n 1 -- train \
  --config="$pfx/share/linrec/configs/quickstart.json" --set=data.synthetic.users=100 \
  --set data.synthetic.items=50 --set=model.d=8 --set model.layers=1 --set model.inner=16 \
  --set model.max_len=8 --set train.epochs=1 --set train.max_steps=3 --set=log.progress=off \
  --out=run > train.log 2>&1
check "installed linrec-run + linrec train outside the source tree, --opt=value options (exit 0)" \
  [ $? = 0 ] && [ -s run/model.lrm ] || tail -5 train.log
"$pfx/bin/linrec" eval --model=run --split=test > eval.out 2>&1
check "--model=run --split=test: eval runs" grep -q '"split":"test"' eval.out || cat eval.out
"$pfx/bin/linrec" eval --model=run --split=nope > /dev/null 2> bad.err
check "--split=nope: the value is checked as with a space (exit 2)" [ $? = 2 ] &&
  grep -q "split must be valid, test or both, got nope" bad.err || cat bad.err
echo "$pass passed, $fail failed"
[ $fail = 0 ]
