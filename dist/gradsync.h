// gradsync.h: the dense gradient allreduce (dist/README.md, "Gradient sums,
// clipping, Adam"): the replicated parameters' exact gradients (lr_model.gx,
// xsum.h: an int64 sum of limbs, bitwise the same at any P) are summed over
// ranks in buckets, one per layer (plus the embedding part), each started
// as a non-blocking allreduce as soon as model_backward reports that layer
// complete, so communication overlaps the backward of the layers below it. Buckets are issued in the
// same order on every rank (layer L-1 .. 0, then the embedding part); a rank
// with nothing to compute issues them all at once (gradsync_finish).
#ifndef LR_GRADSYNC_H
#define LR_GRADSYNC_H

#include "comm.h"
#include "model.h"

typedef struct lr_gradsync lr_gradsync;

// Plan the buckets of m's dense arena. LR_ERR_NOMEM on failure (*gs = NULL).
int gradsync_init(lr_gradsync **gs, lr_model *m);
void gradsync_free(lr_gradsync *gs);

// Arm the model's backward hook so the next model_backward starts the
// buckets (call before the LAST micro-batch of a step). Local.
void gradsync_arm(lr_gradsync *gs);
// Start every bucket not yet started (a rank whose last micro-batch was
// empty), then wait for all, and disarm. Collective. LR_ERR_MPI.
int gradsync_finish(lr_gradsync *gs);

// Traffic and time of the dense allreduce so far. Local.
dist_stats gradsync_stats(const lr_gradsync *gs);

#endif
