#!/usr/bin/env bash
# cli_layers.sh: the folders keep their layering (README, Architecture):
#   core/    numerics: includes only core/ headers; no MPI, files or JSON;
#   io/      data, config and file formats: io/ headers plus core's base
#            (lr.h: errors and allocation; rng.h: counter-based randomness);
#            no MPI;
#   dist/    everything distributed: core/, io/ and dist/ headers, never launch/;
#   launch/  the command line: builds no model (dist/state.h does), so none of
#            the model's or the table's headers and no *_init of them.
# Every quoted #include of every .c/.h/.inc file is checked against these
# rules; a violation names the file, the line and the rule.
# Usage: cli_layers.sh LINREC_BINARY SOURCE_DIR
source "$(dirname "$0")/lib_cli.sh"
python3 - "$src" <<'PY'
import os, re, sys
src = sys.argv[1]
files = {d: sorted(f for f in os.listdir(os.path.join(src, d)) if f.endswith((".c", ".h", ".inc")))
         for d in ("core", "dist", "io", "launch")}
own = {d: set(fs) for d, fs in files.items()}
inc = re.compile(r'^\s*#\s*include\s+([<"])([^>"]+)[>"]')
bad = []
def rule(d, name, sysinc):
    if sysinc:
        if d in ("core", "io") and name == "mpi.h": return "no MPI in %s/" % d
        if d == "core" and (name.startswith("cjson") or name in ("zstd.h", "zlib.h")):
            return "core/ reads and writes no files"
        return None
    if d == "core":
        return None if name in own["core"] else "core/ includes only core/ headers"
    if d == "io":
        return None if name in own["io"] or name in ("lr.h", "rng.h") else \
            "io/ includes io/ headers and core's lr.h and rng.h only"
    if d == "dist":
        return None if name not in own["launch"] else "dist/ never includes launch/"
    if d == "launch":
        model = {"model.h", "model_arch.h", "layers.h", "itemtab.h", "table.h", "emb_shard.h",
                 "vocab_ce.h", "gradsync.h", "loss.h"}
        return "launch/ builds no model (dist/state.h does)" if name in model else None
for d, fs in files.items():
    for f in fs:
        text = open(os.path.join(src, d, f), encoding="utf-8").read().split("\n")
        for n, line in enumerate(text, 1):
            m = inc.match(line)
            if m:
                why = rule(d, m.group(2), m.group(1) == "<")
                if why: bad.append("%s/%s:%d: %s: %s" % (d, f, n, m.group(2), why))
            if d == "launch" and re.search(r"\b(model_init|table_init|itemtab_init)\s*\(", line):
                bad.append("%s/%s:%d: launch/ builds no model (dist/state.h does)" % (d, f, n))
for b in bad: print("  " + b)
print("layering of core/, io/, dist/, launch/ (%d files): %s" %
      (sum(len(v) for v in files.values()), "PASSED" if not bad else "FAILED"))
sys.exit(1 if bad else 0)
PY
