#!/usr/bin/env bash
# cli_readme.sh: the README's configuration key table and attention kind
# table are the ones `linrec train --help --markdown` generates from the key
# table (io/config.c) and the attention registry (core/attention.c), line for
# line; regenerate them with that command when a key or kind changes.
# Usage: cli_readme.sh LINREC_BINARY SOURCE_DIR [SHARED_DATA_DIR]
source "$(dirname "$0")/lib_cli.sh"
"$bin" train --help --markdown > "$tmp/md.txt" || { bad "linrec train --help --markdown runs"; exit 1; }
python3 - "$tmp/md.txt" "$src/README.md" <<'PY'
import sys
md = open(sys.argv[1]).read().rstrip("\n").split("\n\n")
readme = open(sys.argv[2]).read()
ok = True
for table in md:
    name = table.split("\n")[0]
    if table + "\n" in readme:
        print("README holds the generated table %s: PASSED" % name)
    else:
        ok = False
        print("README holds the generated table %s: FAILED" % name)
        have = [l for l in readme.split("\n") if l.startswith("| ")]
        for l in table.split("\n"):
            if l not in have:
                print("  missing or changed: " + l[:160])
sys.exit(0 if ok else 1)
PY
