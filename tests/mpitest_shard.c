// mpitest_shard.c: dist/shard.h on every world size. shard_range covers
// 0..n-1 exactly, in rank order, with the first n % P ranks one larger, for
// n in {0,1,2,3,7,1000} and P = 1..5 (plus huge n), and shard_owner agrees
// with it; the ranks of this run cut together (allgather) cover n exactly.
// shard_users_by_inter on a skewed (Zipf-like) length distribution obeys its
// rule, beats a cut by user count, and survives P > users, zero-length
// users and T = 0.
//
// Checks are collective (mpi_harness.h): every rank evaluates each one, rank
// 0 prints "name: PASSED/FAILED", a failing rank prints "[rank r] FAILED
// name", and every rank exits with the same status.
#include <stdlib.h> // calloc, free

#include "comm.h"
#include "lr.h"
#include "mpi_harness.h" // mt_init, mt_check, mt_done
#include "shard.h"

// ---- shard_range / shard_owner -------------------------------------------------------------

// shard_range(n, ., P) cuts 0..n-1 contiguously with sizes n/P+1 then n/P,
// and shard_owner maps every index (or sampled indices when n is huge) back.
static int check_cut(int64_t n, int P) {
  int64_t next = 0;
  for (int r = 0; r < P; r++) {
    const lr_shard s = shard_range(n, r, P);
    const int64_t want = n / P + (r < n % P ? 1 : 0);
    if (s.offset != next || s.count != want) return 0;
    next += s.count;
    if (s.count == 0) continue;
    const int64_t probe[4] = {s.offset, s.offset + s.count / 2, s.offset + s.count - 1, s.offset};
    if (n <= 100000) {
      for (int64_t i = s.offset; i < s.offset + s.count; i++)
        if (shard_owner(n, P, i) != r) return 0;
    } else {
      for (int k = 0; k < 4; k++)
        if (shard_owner(n, P, probe[k]) != r) return 0;
    }
  }
  return next == n;
}

static void test_range(void) {
  const int64_t ns[] = {0, 1, 2, 3, 7, 1000};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    int ok = 1;
    for (int P = 1; P <= 5; P++)
      ok &= check_cut(ns[k], P);
    mt_check(ok, "shard_range n=%lld, P=1..5: exact contiguous cover, owner agrees",
             (long long)ns[k]);
  }
  int ok = 1;
  const int64_t big[] = {(int64_t)1 << 40, ((int64_t)1 << 40) + 3, 1000000007};
  for (size_t k = 0; k < 3; k++)
    for (int P = 1; P <= 7; P++)
      ok &= check_cut(big[k], P);
  for (int P = 1; P <= 64; P++)
    ok &= check_cut(997, P);
  mt_check(ok, "shard_range huge n (2^40, 2^40+3, 1e9+7) and P up to 64 (n=997)");

  // the ranks of this run, together
  const int P = dist_size(), me = dist_rank();
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    const lr_shard s = shard_range(ns[k], me, P);
    int64_t mine[2] = {s.offset, s.count}, *all = calloc((size_t)P * 2, sizeof *all);
    int rc = dist_allgather(all, mine, 2, LR_DTYPE_I64);
    int good = rc == LR_OK;
    int64_t next = 0;
    for (int q = 0; good && q < P; q++) {
      good &= all[2 * q] == next;
      next += all[2 * q + 1];
    }
    good &= next == ns[k];
    free(all);
    mt_check(good, "shard_range n=%lld across the %d ranks of this run (allgather)",
             (long long)ns[k], P);
  }
}

// ---- user balancing ------------------------------------------------------------------

// The rule of shard_users_by_inter, checked user by user in exact integers:
// user u on rank r iff r*T/P <= mid_u < (r+1)*T/P, i.e.
// 2rT <= P(off[u]+off[u+1]) < 2(r+1)T.
static int check_users(const int64_t *off, int64_t n_users, int P) {
  int64_t *lo = calloc((size_t)P + 1, sizeof *lo);
  shard_users_by_inter(lo, off, n_users, P);
  const int64_t T = off[n_users];
  int ok = lo[0] == 0 && lo[P] == n_users;
  for (int r = 0; r < P; r++) {
    ok &= lo[r] <= lo[r + 1];
    for (int64_t u = lo[r]; ok && T > 0 && u < lo[r + 1]; u++) {
      const __int128 x = (__int128)P * (off[u] + off[u + 1]);
      ok &= x >= (__int128)2 * r * T && (r == P - 1 || x < (__int128)2 * (r + 1) * T);
    }
  }
  if (T == 0)
    for (int r = 0; r <= P; r++)
      ok &= lo[r] == (r == P ? n_users : shard_range(n_users, r, P).offset);
  // imbalance: by definition, and bounded by (T/P + longest user) / (T/P)
  int64_t mx = 0, maxlen = 0;
  for (int r = 0; r < P; r++)
    if (off[lo[r + 1]] - off[lo[r]] > mx) mx = off[lo[r + 1]] - off[lo[r]];
  for (int64_t u = 0; u < n_users; u++)
    if (off[u + 1] - off[u] > maxlen) maxlen = off[u + 1] - off[u];
  const double imb = shard_imbalance(lo, off, P);
  if (T > 0) {
    ok &= imb > (double)mx * P / (double)T - 1e-12 && imb < (double)mx * P / (double)T + 1e-12;
    ok &= imb <= 1.0 + (double)P * (double)maxlen / (double)T + 1e-12;
  } else {
    ok &= imb == 1.0;
  }
  free(lo);
  return ok;
}

static void test_users(void) {
  // skewed: len_u = 1 + 2000/(u+1) for 300 users (the first user ~2000, the tail 7),
  // every 10th user empty
  const int64_t n_users = 300;
  int64_t *off = calloc((size_t)n_users + 1, sizeof *off);
  for (int64_t u = 0; u < n_users; u++)
    off[u + 1] = off[u] + (u % 10 == 9 ? 0 : 1 + 2000 / (u + 1));
  int ok = 1;
  const int Ps[] = {1, 2, 3, 4, 5, 8, 17, 299, 300, 301, 1000};
  for (size_t k = 0; k < sizeof Ps / sizeof Ps[0]; k++)
    ok &= check_users(off, n_users, Ps[k]);
  mt_check(ok, "shard_users_by_inter: rule and imbalance bound, skewed lengths, P up to 1000");

  // against a cut by user count, at this run's P and at 4
  const int P = dist_size() > 1 ? dist_size() : 4;
  int64_t *lo = calloc((size_t)P + 1, sizeof *lo), *lc = calloc((size_t)P + 1, sizeof *lc);
  shard_users_by_inter(lo, off, n_users, P);
  for (int r = 0; r <= P; r++)
    lc[r] = r == P ? n_users : shard_range(n_users, r, P).offset;
  const double ib = shard_imbalance(lo, off, P), ic = shard_imbalance(lc, off, P);
  mt_check(ib < ic && ib < 1.6, "shard_users_by_inter P=%d: imbalance %.3f (by user count %.3f)", P,
           ib, ic);
  free(lo);
  free(lc);

  // this run's ranks: every rank derives the same cut; owned users tile 0..n_users
  {
    const int Pr = dist_size(), me = dist_rank();
    int64_t *cut = calloc((size_t)Pr + 1, sizeof *cut);
    shard_users_by_inter(cut, off, n_users, Pr);
    int64_t mine[2] = {cut[me], cut[me + 1]}, *all = calloc((size_t)Pr * 2, sizeof *all);
    int good = dist_allgather(all, mine, 2, LR_DTYPE_I64) == LR_OK;
    for (int q = 0; good && q < Pr; q++)
      good &= all[2 * q] == (q ? all[2 * q - 1] : 0) && all[2 * q + 1] >= all[2 * q];
    good &= all[2 * Pr - 1] == n_users;
    mt_check(good, "shard_users_by_inter: the %d ranks' ranges tile the users", Pr);
    free(cut);
    free(all);
  }
  free(off);

  // one giant user, zero-user ranks, no interactions at all, no users
  int64_t g[5] = {0, 1000, 1001, 1002, 1003}; // lengths 1000, 1, 1, 1
  ok = check_users(g, 4, 2) && check_users(g, 4, 3) && check_users(g, 4, 8);
  int64_t lo2[3];
  shard_users_by_inter(lo2, g, 4, 2);
  ok &= lo2[1] == 1;                 // the giant user alone on rank 0 (mid 500 < T/2 = 501.5)
  int64_t z[6] = {0, 0, 0, 0, 0, 0}; // 5 users, T = 0
  ok &= check_users(z, 5, 1) && check_users(z, 5, 3) && check_users(z, 5, 7);
  int64_t e[1] = {0}; // no users
  ok &= check_users(e, 0, 1) && check_users(e, 0, 4);
  int64_t two[3] = {0, 5, 9}; // 2 users, 5 ranks: 3 ranks own nobody
  int64_t lo5[6];
  shard_users_by_inter(lo5, two, 2, 5);
  int empty = 0;
  for (int r = 0; r < 5; r++)
    empty += lo5[r + 1] == lo5[r];
  ok &= check_users(two, 2, 5) && empty == 3;
  mt_check(ok, "shard_users_by_inter: giant user, zero-user ranks, T = 0, no users");
}

int main(int argc, char **argv) {
  if (mt_init(&argc, &argv)) return 1;
  test_range();
  test_users();
  return mt_done("mpitest_shard");
}
