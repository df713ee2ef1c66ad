// shard.h: how global index ranges are cut across P ranks (dist/README.md,
// "Users and item rows").
//
// shard_range is THE sharding function: users, item rows (in whole blocks,
// shard_items) and optimizer-state shards are all cut by it, and nothing
// else in the code base does shard arithmetic, so a checkpoint written on P
// ranks can be re-cut on P' ranks.
// shard_users_by_inter is the one exception (users are balanced by
// interaction count, not by user count): it cuts a CSR of sequences into
// contiguous user ranges of about equal interaction counts.
//
// Every function here is Local and cannot fail (arguments outside the stated
// ranges are bugs and hit LR_ASSERT). Zero-size ranges are normal: P may
// exceed the number of users or items.
#ifndef LR_SHARD_H
#define LR_SHARD_H

#include <stdint.h>

typedef struct {
  int64_t offset, count; // indices offset .. offset+count-1
} lr_shard;

// The slice of 0..n-1 that rank `rank` of P owns: the first n % P ranks take
// n/P + 1 indices, the others n/P. Slices are contiguous, in rank order, and
// cover 0..n-1 exactly. n >= 0, 0 <= rank < P.
lr_shard shard_range(int64_t n, int rank, int P);

// The rank whose shard_range(n, rank, P) holds `index` (0 <= index < n). O(1).
int shard_owner(int64_t n, int P, int64_t index);

// The item table's cut: the n_rows rows (I+1) in whole blocks of
// ce_block_items(n_rows) rows (the cross-entropy's fixed item blocks,
// core/loss.h), the blocks cut by shard_range, so no block straddles two
// ranks (which keeps the loss bitwise the same at any P). The last block
// may be short; a rank may own no rows.
lr_shard shard_items(int64_t n_rows, int rank, int P);
// The rank whose shard_items holds row id (0 <= id < n_rows). O(1).
int shard_items_owner(int64_t n_rows, int P, int64_t id);

// Contiguous user ranges balanced by interaction count. offsets (n_users+1)
// is the CSR of sequences: user u has offsets[u+1]-offsets[u] interactions,
// T = offsets[n_users] in all. Writes user_lo (P+1): rank r owns users
// user_lo[r] .. user_lo[r+1]-1, user_lo[0] = 0, user_lo[P] = n_users.
// Rule: user u goes to the rank r with r*T/P <= mid_u < (r+1)*T/P, where
// mid_u = offsets[u] + len_u/2 is the middle of its interactions (the
// middle, not the start, so one long user does not drag its whole length
// onto the rank before). With T = 0 users are cut by shard_range.
void shard_users_by_inter(int64_t *user_lo, const int64_t *offsets, int64_t n_users, int P);

// Load imbalance of a user cut: max over ranks of the interactions a rank
// owns divided by the mean T/P (1 = perfect; P = everything on one rank).
// 1 when T = 0. user_lo (P+1) as written by shard_users_by_inter.
double shard_imbalance(const int64_t *user_lo, const int64_t *offsets, int P);

#endif
