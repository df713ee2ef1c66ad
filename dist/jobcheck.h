// jobcheck.h: the ranks of a job check that they run the same job: the same
// linrec binary, command and config at start-up, the same data once loaded,
// the same checkpoint when resuming. Ranks that differ (an MPMD launch
// `mpirun ... : ...`, nodes with other files or another build, a checkpoint
// directory that is not shared) would otherwise train silently on
// inconsistent state, corrupt memory inside a collective whose sizes
// disagree, or hang.
//
// Each check is one allgather of a fixed record per rank (host, pid and a
// 64-bit value per item); the texts that explain a mismatch travel only
// then. A mismatch is LR_ERR_CONFIG on rank 0 with one message naming the
// first rank that differs from rank 0, both hosts and what differs with
// both values, and LR_ERR_PEER on every other rank: the failure is agreed
// (dist_agree), so the job ends without MPI_Abort and main exits 2. All are
// Collective and return at once at P = 1; LR_ERR_MPI / LR_ERR_NOMEM as the
// dist/ wrappers.
//
// Not here: what makes two configs compatible for a resume (ckpt_resume.h).
#ifndef LR_JOBCHECK_H
#define LR_JOBCHECK_H

#include "ckpt.h"    // ckpt_manifest
#include "config.h"  // lr_config
#include "dataset.h" // lr_data_fp

// At start-up, after the config is built: the binary (/proc/self/exe: path,
// size and CRC-32 of its bytes), `command` (the command line's words that
// are not config: command, --out, --resume, --model, ...; free text) and the
// whole config (a mismatch lists the keys that differ).
int jobcheck_start(const lr_config *c, const char *command);

// Once the data of config c is loaded: its fingerprint (the message names
// data.path, or "synthetic data").
int jobcheck_data(const lr_data_fp *fp, const lr_config *c);

// When resuming, after every rank has read the manifest of `dir` into *m:
// the step, world size, config hash and data fingerprint it records.
int jobcheck_resume(const char *dir, const ckpt_manifest *m);

#endif
