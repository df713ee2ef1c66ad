// shard.c: the sharding arithmetic of shard.h.
#include "shard.h"

#include "loss.h" // ce_block_items
#include "lr.h"   // LR_ASSERT

lr_shard shard_range(int64_t n, int rank, int P) {
  LR_ASSERT(n >= 0 && P >= 1 && rank >= 0 && rank < P);
  const int64_t base = n / P, extra = n % P, r = rank;
  lr_shard s = {r * base + (r < extra ? r : extra), base + (r < extra ? 1 : 0)};
  return s;
}

int shard_owner(int64_t n, int P, int64_t index) {
  LR_ASSERT(P >= 1 && index >= 0 && index < n);
  const int64_t base = n / P, extra = n % P;
  // the first `extra` ranks hold base+1 indices each, the rest base
  const int64_t big = extra * (base + 1);
  if (index < big) return (int)(index / (base + 1));
  return (int)(extra + (index - big) / base); // base >= 1 here: index >= big means n > big
}

lr_shard shard_items(int64_t n_rows, int rank, int P) {
  const int64_t B = ce_block_items(n_rows), nb = (n_rows + B - 1) / B;
  const lr_shard b = shard_range(nb, rank, P);
  const int64_t lo = b.offset * B, hi = (b.offset + b.count) * B;
  lr_shard s = {lo < n_rows ? lo : n_rows, (hi < n_rows ? hi : n_rows) - (lo < n_rows ? lo : n_rows)};
  return s;
}

int shard_items_owner(int64_t n_rows, int P, int64_t id) {
  LR_ASSERT(id >= 0 && id < n_rows);
  const int64_t B = ce_block_items(n_rows);
  return shard_owner((n_rows + B - 1) / B, P, id / B);
}

// 2*mid_u = offsets[u] + offsets[u+1]: non-decreasing in u.
static int64_t mid2(const int64_t *offsets, int64_t u) { return offsets[u] + offsets[u + 1]; }

void shard_users_by_inter(int64_t *user_lo, const int64_t *offsets, int64_t n_users, int P) {
  LR_ASSERT(n_users >= 0 && P >= 1 && offsets[0] == 0);
  const int64_t T = offsets[n_users];
  user_lo[0] = 0;
  user_lo[P] = n_users;
  if (T == 0) {
    for (int r = 1; r < P; r++)
      user_lo[r] = shard_range(n_users, r, P).offset;
    return;
  }
  // user_lo[r] = first u with mid_u >= r*T/P, i.e. P*(2 mid_u) >= 2 r T (exact in 128 bits)
  for (int r = 1; r < P; r++) {
    const __int128 bound = (__int128)2 * r * T;
    int64_t a = user_lo[r - 1], b = n_users; // answer in [a, b]
    while (a < b) {
      const int64_t m = a + (b - a) / 2;
      if ((__int128)P * mid2(offsets, m) >= bound)
        b = m;
      else
        a = m + 1;
    }
    user_lo[r] = a;
  }
}

double shard_imbalance(const int64_t *user_lo, const int64_t *offsets, int P) {
  LR_ASSERT(P >= 1);
  const int64_t T = offsets[user_lo[P]] - offsets[user_lo[0]];
  if (T == 0) return 1.0;
  int64_t mx = 0;
  for (int r = 0; r < P; r++) {
    const int64_t w = offsets[user_lo[r + 1]] - offsets[user_lo[r]];
    if (w > mx) mx = w;
  }
  return (double)mx * (double)P / (double)T;
}
