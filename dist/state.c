// state.c: the parameter groups of state.h.
#include "state.h"

#include <math.h>   // sqrt
#include <string.h> // memset, memcpy, strcmp

#include "comm.h"
#include "lr.h"
#include "modelfile.h"
#include "shard.h"

// ---- configuration and placement --------------------------------------------------------

int state_config_choices(void) {
  LR_CALL(config_set_choices("model.attention", attn_names()));
  return config_set_choices("model.arch", model_arch_names());
}

int state_model_cfg(lr_model_cfg *mc, const lr_config *c, int64_t n_items, int training) {
  const lr_attn_ops *k = attn_get(c->model_attention);
  const lr_arch *a = model_arch_get(c->model_arch);
  LR_CHECK(k, LR_ERR_CONFIG, "key \"model.attention\": no attention kind has id %d",
           c->model_attention);
  LR_CHECK(a, LR_ERR_CONFIG, "key \"model.arch\": no architecture has id %d", c->model_arch);
  *mc = (lr_model_cfg){.n_items = n_items,
                       .max_len = c->model_max_len,
                       .d = c->model_d,
                       .heads = c->model_heads,
                       .layers = c->model_layers,
                       .inner = c->model_inner,
                       .dropout = training ? (float)c->model_dropout : 0.0f,
                       .ln_eps = (float)c->model_ln_eps,
                       .ffn_relu = c->model_ffn == LR_FFN_RELU,
                       .attn = k,
                       .arch = a,
                       .drop_path = training ? (float)c->model_drop_path : 0.0f,
                       .last_only = !training || c->train_positions == LR_POS_LAST,
                       .emb_scale = c->model_ram_emb_scale ? (float)sqrt((double)c->model_d) : 1.0f,
                       .pos_from_end = c->model_ram_pos_from == 0,
                       .no_user_table = !c->model_ram_users};
  return LR_OK;
}

int state_dense_tensors(const lr_config *c, int64_t n_items, lr_dense_tensor t[LR_MAX_TENSORS],
                        int *n, int64_t *layers) {
  lr_model_cfg mc;
  LR_CALL(state_model_cfg(&mc, c, n_items, 0));
  lr_tensor mt[LR_MAX_TENSORS];
  *n = model_tensors(&mc, mt);
  for (int k = 0; k < *n; k++)
    t[k] = (lr_dense_tensor){mt[k].name, mt[k].elems, mt[k].per_layer};
  *layers = mc.layers;
  return LR_OK;
}

lr_table_mode state_items_mode(const lr_config *c, int64_t n_items, int training,
                               int64_t rows_per_step, int64_t ids_per_step) {
  if (c->dist_item_table == 1) return LR_TABLE_SHARDED;
  if (c->dist_item_table == 2) return LR_TABLE_REPLICATED;
  const int P = dist_size();
  const double f = P > 1 ? (double)(P - 1) / P : 0.0;
  const double D = (double)c->model_d, I1 = (double)(n_items + 1);
  if (!training) { // no gradients: a replicated table costs memory only
    const double bytes = I1 * D * sizeof(float);
    return P > 1 && bytes > 256.0 * (1 << 20) ? LR_TABLE_SHARDED : LR_TABLE_REPLICATED;
  }
  // replicated: the table gradient allreduce, 2 * (I+1) * D floats
  const double repl = 2.0 * I1 * D * 4.0 * f;
  // sharded: rows of the distinct ids out and their gradients back (at most
  // one per id), plus the vocab-parallel loss (allgather H, reduce-scatter dH)
  const double ids = (double)ids_per_step;
  const double uniq = ids < I1 ? ids : I1;
  double shard = 2.0 * uniq * D * 4.0 * f;
  if (c->train_objective == LR_OBJ_CE) shard += 2.0 * (double)rows_per_step * D * 4.0 * (P - 1);
  const lr_table_mode m = shard <= repl ? LR_TABLE_SHARDED : LR_TABLE_REPLICATED;
  dist_log0("dist.item_table=auto: %s (per step about %.1f MiB sharded vs %.1f MiB replicated)\n",
            m == LR_TABLE_SHARDED ? "sharded" : "replicated", shard / (1 << 20), repl / (1 << 20));
  return m;
}

// ---- set-up -------------------------------------------------------------------------------

static void rowgroup_free(lr_rowgroup *r) {
  void *bufs[] = {r->w, r->g, r->m, r->v, r->best, r->gx, r->touched, r->list, r->batch, r->dbatch};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lr_free(bufs[i]);
  memset(r, 0, sizeof *r);
}

void state_free(lr_state *s) {
  model_free(&s->model);
  table_free(&s->table);
  gradsync_free(s->gsync);
  for (int g = 0; g < s->n_rows_groups; g++)
    rowgroup_free(&s->rg[g]);
  lr_free(s->user_lo);
  lr_free(s->best_dense);
  lr_free(s->best_items);
  memset(s, 0, sizeof *s);
}

// Rows of group `gi` that rank q holds (placement rules of state.h).
static void group_range(const lr_state *s, int gi, int q, int64_t *lo, int64_t *hi) {
  const lr_group *g = &s->g[gi];
  if (g->kind == LR_GROUP_DENSE || g->place == LR_PLACE_REPLICATED) {
    *lo = 0, *hi = g->n_rows;
  } else if (g->place == LR_PLACE_SHARDED) {
    const lr_shard sh = shard_items(g->n_rows, q, dist_size());
    *lo = sh.offset, *hi = sh.offset + sh.count;
  } else {
    *lo = s->user_lo[q], *hi = s->user_lo[q + 1];
  }
}

// A users-placed row group for this rank's users [lo, hi).
static int rowgroup_init(lr_rowgroup *r, const lr_seq_group *spec, int64_t lo, int64_t hi,
                         int64_t max_B, int training, uint64_t seed) {
  memset(r, 0, sizeof *r);
  r->spec = *spec;
  r->lo = lo, r->hi = hi;
  const size_t n = (size_t)(hi - lo) * (size_t)spec->width,
               nb = (size_t)max_B * (size_t)spec->width;
  int ok = (r->w = lr_calloc(n, sizeof(float), "row group")) != NULL &&
           (r->batch = lr_calloc(nb, sizeof(float), "row group batch")) != NULL;
  if (ok && training)
    ok = (r->g = lr_calloc(n, sizeof(float), "row group gradient")) &&
         (r->m = lr_calloc(n, sizeof(float), "row group Adam m")) &&
         (r->v = lr_calloc(n, sizeof(float), "row group Adam v")) &&
         (r->best = lr_calloc(n, sizeof(float), "row group best")) &&
         (r->gx = lr_calloc(n, sizeof(lr_xs), "row group exact gradient")) &&
         (r->touched = lr_calloc((size_t)(hi - lo), 1, "row group marks")) &&
         (r->list = lr_calloc((size_t)(hi - lo), sizeof(int64_t), "row group list")) &&
         (r->dbatch = lr_calloc(nb, sizeof(lr_xs), "row group batch gradient"));
  if (!ok) {
    rowgroup_free(r);
    lr_error_trace(__FILE__, __LINE__, __func__);
    return LR_ERR_NOMEM;
  }
  model_init_rows(r->w, lo, hi, spec->width, spec->key, seed);
  return LR_OK;
}

static void add_group(lr_state *s, const char *name, lr_group_kind kind, lr_place place,
                      int64_t n_rows, int64_t width, int64_t lo, int64_t hi, float *w, float *m,
                      float *v, float *best) {
  LR_ASSERT(s->n_groups < LR_MAX_GROUPS && strlen(name) < LR_GROUP_NAME_MAX);
  lr_group *g = &s->g[s->n_groups++];
  memset(g, 0, sizeof *g);
  strcpy(g->name, name);
  g->kind = kind, g->place = place, g->n_rows = n_rows, g->width = width;
  g->lo = lo, g->hi = hi, g->w = w, g->m = m, g->v = v, g->best = best;
}

// Everything before the first collective.
static int init_local(lr_state *s, const lr_config *c, const lr_dataset *ds,
                      const lr_state_opts *o) {
  const int P = dist_size(), me = dist_rank();
  const uint64_t seed = (uint64_t)c->train_seed;
  lr_model_cfg mc;
  LR_CALL(state_model_cfg(&mc, c, ds->n_items, o->training));
  s->n_users = ds->n_users;
  s->user_lo = lr_calloc((size_t)P + 1, sizeof(int64_t), "user ranges");
  if (!s->user_lo) return LR_ERR_NOMEM;
  shard_users_by_inter(s->user_lo, ds->offsets, ds->n_users, P);
  LR_CALL(model_init(&s->model, &mc, o->max_B, seed));
  if (o->training) LR_CALL(gradsync_init(&s->gsync, &s->model));
  lr_seq_group sg[LR_MAX_SEQ_GROUPS];
  s->n_rows_groups = model_seq_groups(&mc, sg);
  for (int g = 0; g < s->n_rows_groups; g++) {
    const int64_t lo = o->all_users ? 0 : s->user_lo[me];
    const int64_t hi = o->all_users ? ds->n_users : s->user_lo[me + 1];
    LR_CALL(rowgroup_init(&s->rg[g], &sg[g], lo, hi, o->max_B, o->training, seed));
    s->seq_rows[g] = s->rg[g].batch;
    s->dseq[g] = s->rg[g].dbatch;
  }
  if (o->training &&
      !(s->best_dense = lr_calloc(s->model.n_params, sizeof(float), "best model parameters")))
    return LR_ERR_NOMEM;
  return LR_OK;
}

int state_init(lr_state *s, const lr_config *c, const lr_dataset *ds, const lr_state_opts *o) {
  memset(s, 0, sizeof *s);
  s->c = c;
  s->training = o->training;
  int rc = dist_agree(init_local(s, c, ds, o));
  if (rc == LR_OK)
    rc = dist_agree(table_init(&s->table, o->items, ds->n_items + 1, c->model_d, o->max_ids,
                               o->ce_rows, c->train_loss_tile, o->rchunk, (uint64_t)c->train_seed));
  const lr_itemtab *tb = &s->table.tab;
  const size_t item_floats = (size_t)itemtab_rows(tb) * (size_t)c->model_d;
  if (rc == LR_OK && o->training &&
      !(s->best_items = lr_calloc(item_floats, sizeof(float), "best model item rows")))
    rc = LR_ERR_NOMEM;
  if ((rc = dist_agree(rc)) != LR_OK) {
    state_free(s);
    return rc;
  }
  lr_model *m = &s->model;
  add_group(s, "dense", LR_GROUP_DENSE, LR_PLACE_REPLICATED, (int64_t)m->n_params, 1, 0,
            (int64_t)m->n_params, m->params_mem, o->training ? m->m_mem : NULL,
            o->training ? m->v_mem : NULL, s->best_dense);
  add_group(s, "items", LR_GROUP_ROWS,
            s->table.mode == LR_TABLE_SHARDED ? LR_PLACE_SHARDED : LR_PLACE_REPLICATED,
            ds->n_items + 1, c->model_d, tb->lo, tb->hi, tb->w, o->training ? tb->m : NULL,
            o->training ? tb->v : NULL, s->best_items);
  for (int g = 0; g < s->n_rows_groups; g++) {
    lr_rowgroup *r = &s->rg[g];
    add_group(s, r->spec.name, LR_GROUP_ROWS, o->all_users ? LR_PLACE_REPLICATED : LR_PLACE_USERS,
              ds->n_users, r->spec.width, r->lo, r->hi, r->w, r->m, r->v, r->best);
  }
  return LR_OK;
}

int state_open_model(lr_state *s, const lr_config *c, const lr_dataset *ds, const char *path,
                     int all_users) {
  lr_state_opts o = {.training = 0,
                     .max_B = c->eval_batch_size,
                     .max_ids = c->eval_batch_size * (c->model_max_len + 101),
                     .ce_rows = 0,
                     .rchunk = 256,
                     .items = state_items_mode(c, ds->n_items, 0, 0, 0),
                     .all_users = all_users};
  LR_CALL(state_init(s, c, ds, &o));
  int rc = state_load_model(s, path);
  if (rc != LR_OK) state_free(s);
  return rc;
}

// ---- a batch's user rows --------------------------------------------------------------------

const float *const *state_seq_rows(lr_state *s, const int64_t *users, int64_t B) {
  if (!s) return NULL; // a bare model (tests): no row groups
  for (int g = 0; g < s->n_rows_groups; g++) {
    lr_rowgroup *r = &s->rg[g];
    const int64_t w = r->spec.width;
    for (int64_t b = 0; b < B; b++) {
      LR_ASSERT(users[b] >= r->lo && users[b] < r->hi);
      memcpy(r->batch + b * w, r->w + (users[b] - r->lo) * w, (size_t)w * sizeof(float));
    }
    if (r->dbatch) memset(r->dbatch, 0, (size_t)(B * w) * sizeof(lr_xs));
  }
  return s->n_rows_groups ? (const float *const *)s->seq_rows : NULL;
}

lr_xs *const *state_seq_grads(lr_state *s) { return s->n_rows_groups ? s->dseq : NULL; }

void state_seq_push(lr_state *s, const int64_t *users, int64_t B) {
  for (int g = 0; g < s->n_rows_groups; g++) {
    lr_rowgroup *r = &s->rg[g];
    const int64_t w = r->spec.width;
    for (int64_t b = 0; b < B; b++) {
      const int64_t row = users[b] - r->lo;
      xsum_merge(r->gx + row * w, r->dbatch + b * w, w); // integer adds: exact, any order
      if (!r->touched[row]) r->touched[row] = 1, r->list[r->n_list++] = row;
    }
  }
}

dist_stats state_rows_stats(const lr_state *s) {
  dist_stats t = {0};
  for (int g = 0; g < s->n_rows_groups; g++) {
    t.calls += s->rg[g].comm.calls, t.seconds += s->rg[g].comm.seconds;
    t.bytes_sent += s->rg[g].comm.bytes_sent, t.bytes_recv += s->rg[g].comm.bytes_recv;
  }
  return t;
}

// ---- one optimizer step -----------------------------------------------------------------------

void state_zero_grad(lr_state *s, int full) {
  model_zero_grad(&s->model);
  table_zero_grad(&s->table, full);
  for (int g = 0; g < s->n_rows_groups; g++) {
    lr_rowgroup *r = &s->rg[g];
    const int64_t w = r->spec.width;
    for (int64_t i = 0; i < r->n_list; i++) {
      const int64_t row = r->list[i];
      memset(r->gx + row * w, 0, (size_t)w * sizeof(lr_xs));
      memset(r->g + row * w, 0, (size_t)w * sizeof(float));
      r->touched[row] = 0;
    }
    r->n_list = 0;
  }
}

int state_sync(lr_state *s, int full, uint32_t *bad) {
  LR_CALL(gradsync_finish(s->gsync));
  model_grads_to_float(&s->model);
  LR_CALL(table_sync(&s->table, full));
  for (int g = 0; g < s->n_rows_groups; g++) {
    lr_rowgroup *r = &s->rg[g];
    const int64_t w = r->spec.width;
    for (int64_t i = 0; i < r->n_list; i++)
      xsum_to_float(r->g + r->list[i] * w, r->gx + r->list[i] * w, w);
  }
  *bad = s->model.grad_bad | s->table.bad;
  return LR_OK;
}

int state_clip(lr_state *s, double max_norm) {
  if (max_norm <= 0) return LR_OK;
  // exact sums of squares: the item rows' (own rows when sharded: summed
  // over ranks) and the row groups' (always summed over ranks); the dense
  // arena's is the same on every rank
  const int sharded = s->table.mode == LR_TABLE_SHARDED;
  const lr_xs tab_sq = table_grad_sumsq(&s->table);
  lr_xs v[2] = {sharded ? tab_sq : (lr_xs){0, 0, 0}, {0, 0, 0}};
  for (int g = 0; g < s->n_rows_groups; g++) {
    const lr_rowgroup *r = &s->rg[g];
    for (int64_t i = 0; i < r->n_list; i++) {
      const double sq = grad_sumsq(r->g + r->list[i] * r->spec.width, r->spec.width);
      if (sq != 0) (void)xsum_add_d(&v[1], sq);
    }
  }
  if (sharded || s->n_rows_groups) LR_CALL(dist_allreduce_xs(v, 2));
  if (!sharded) xsum_merge(&v[0], &tab_sq, 1);
  xsum_merge(&v[0], &v[1], 1);
  const double nrm =
      sqrt(grad_sumsq(s->model.grads_mem, (int64_t)s->model.n_params) + xsum_value(v[0]));
  if (nrm > max_norm) {
    const float f = (float)(max_norm / nrm);
    grad_scale(s->model.grads_mem, (int64_t)s->model.n_params, f);
    table_grad_scale(&s->table, f);
    for (int g = 0; g < s->n_rows_groups; g++) {
      lr_rowgroup *r = &s->rg[g];
      for (int64_t i = 0; i < r->n_list; i++)
        grad_scale(r->g + r->list[i] * r->spec.width, r->spec.width, f);
    }
  }
  return LR_OK;
}

void state_adam(lr_state *s, lr_adam_cfg ac, int64_t step, int full) {
  lr_model *m = &s->model;
  adam_update(m->params_mem, m->m_mem, m->v_mem, m->grads_mem, (int64_t)m->n_params, ac, step);
  table_adam(&s->table, ac, step, full);
  for (int g = 0; g < s->n_rows_groups; g++) { // lazy: the rows with gradient
    lr_rowgroup *r = &s->rg[g];
    const int64_t w = r->spec.width;
    for (int64_t i = 0; i < r->n_list; i++)
      adam_update_rows(r->w, r->m, r->v, r->g + r->list[i] * w, &r->list[i], 1, w, ac, step);
  }
}

// ---- the best model ---------------------------------------------------------------------------

static size_t group_floats(const lr_group *g) { return (size_t)(g->hi - g->lo) * (size_t)g->width; }

void state_snapshot_best(lr_state *s) {
  for (int i = 0; i < s->n_groups; i++)
    if (s->g[i].best) memcpy(s->g[i].best, s->g[i].w, group_floats(&s->g[i]) * sizeof(float));
}

void state_restore_best(lr_state *s) {
  for (int i = 0; i < s->n_groups; i++)
    if (s->g[i].best) memcpy(s->g[i].w, s->g[i].best, group_floats(&s->g[i]) * sizeof(float));
}

// ---- the state hash ----------------------------------------------------------------------------

static uint64_t mix64(uint64_t x) { // splitmix64's finaliser
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static uint64_t hash_floats(uint64_t h, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, x + i, sizeof u);
    h = mix64(h ^ u) + (uint64_t)i;
  }
  return h;
}

// The dense group hashed once as a whole (rank 0); every row of a ROWS group
// hashed with its global id (and, beyond "items", its group's name) by the
// one rank that counts it, the row hashes summed mod 2^64: any cut of the
// rows into ranks gives the same sum.
int state_hash(const lr_state *s, uint64_t *out) {
  const int me = dist_rank();
  uint64_t acc = 0;
  for (int i = 0; i < s->n_groups; i++) {
    const lr_group *g = &s->g[i];
    LR_ASSERT(g->m && g->v);
    const int64_t n = g->hi - g->lo, W = g->width;
    if (g->kind == LR_GROUP_DENSE) {
      if (me == 0) acc += hash_floats(hash_floats(hash_floats(1, g->w, n), g->m, n), g->v, n);
      continue;
    }
    if (g->place == LR_PLACE_REPLICATED && me != 0) continue;
    uint64_t salt = UINT64_C(0x9e3779b97f4a7c15);
    if (strcmp(g->name, "items"))
      for (const char *c = g->name; *c; c++)
        salt = mix64(salt ^ (uint8_t)*c);
    for (int64_t r = 0; r < n; r++) {
      uint64_t h = mix64((uint64_t)(g->lo + r) + salt);
      h = hash_floats(h, g->w + r * W, W);
      h = hash_floats(h, g->m + r * W, W);
      acc += hash_floats(h, g->v + r * W, W);
    }
  }
  int64_t halves[2] = {(int64_t)(acc & 0xffffffffu),
                       (int64_t)(acc >> 32)}; // no overflow in the sum
  LR_CALL(dist_allreduce_sum_i64(halves, 2));
  *out = (uint64_t)halves[0] + ((uint64_t)halves[1] << 32);
  return LR_OK;
}

// ---- checkpoints ------------------------------------------------------------------------------

// The rows of group i this rank writes to a checkpoint: (lo, hi), or none.
static int ck_rows(const lr_state *s, int i, int64_t *lo, int64_t *hi) {
  const lr_group *g = &s->g[i];
  const int me = dist_rank();
  if (g->kind == LR_GROUP_DENSE) {
    *lo = 0, *hi = g->n_rows;
    return me == 0;
  }
  if (g->place == LR_PLACE_REPLICATED) {
    const lr_shard sh = shard_items(g->n_rows, me, dist_size());
    *lo = sh.offset, *hi = sh.offset + sh.count;
  } else {
    *lo = g->lo, *hi = g->hi;
  }
  return 1;
}

void state_ckpt_layout(const lr_state *s, ckpt_writer_cfg *wc) {
  wc->n_groups = s->n_groups;
  wc->n_parts = 0;
  for (int i = 0; i < s->n_groups; i++) {
    const lr_group *g = &s->g[i];
    const int kind = g->kind == LR_GROUP_DENSE ? CKPT_KIND_DENSE : CKPT_KIND_ROWS;
    ckpt_group *cg = &wc->groups[i];
    memset(cg, 0, sizeof *cg);
    snprintf(cg->name, sizeof cg->name, "%s", g->name);
    cg->kind = kind, cg->n_arrays = LR_STATE_CK_ARRAYS;
    cg->n_rows = g->n_rows, cg->width = g->width;
    int64_t lo, hi;
    if (!ck_rows(s, i, &lo, &hi)) continue;
    LR_ASSERT(wc->n_parts < CKPT_MAX_PARTS);
    ckpt_part *p = &wc->parts[wc->n_parts++];
    memset(p, 0, sizeof *p);
    snprintf(p->group, sizeof p->group, "%s", g->name);
    p->kind = kind, p->lo = lo, p->hi = hi, p->width = g->width;
    p->n_arrays = LR_STATE_CK_ARRAYS;
    p->n_snapshot = 3; // w, m, v change during a background write; best does not
  }
}

void state_ckpt_source(const lr_state *s, ckpt_source *src) {
  memset(src, 0, sizeof *src);
  int p = 0;
  for (int i = 0; i < s->n_groups; i++) {
    const lr_group *g = &s->g[i];
    int64_t lo, hi;
    if (!ck_rows(s, i, &lo, &hi)) continue;
    const size_t off = (size_t)(lo - g->lo) * (size_t)g->width;
    const float *a[LR_STATE_CK_ARRAYS] = {g->w, g->m, g->v, g->best};
    for (int k = 0; k < LR_STATE_CK_ARRAYS; k++)
      src->arrays[p][k] = a[k] + off;
    p++;
  }
}

int state_ckpt_load(lr_state *s, const char *dir, const ckpt_manifest *m) {
  ckpt_resume_group rg[LR_MAX_GROUPS];
  for (int i = 0; i < s->n_groups; i++) {
    const lr_group *g = &s->g[i];
    rg[i] =
        (ckpt_resume_group){.name = g->name,
                            .kind = g->kind == LR_GROUP_DENSE ? CKPT_KIND_DENSE : CKPT_KIND_ROWS,
                            .n_rows = g->n_rows,
                            .width = g->width,
                            .n_arrays = LR_STATE_CK_ARRAYS,
                            .lo = g->lo,
                            .hi = g->hi,
                            .arrays = {g->w, g->m, g->v, g->best}};
  }
  return ckpt_resume_load(dir, m, rg, s->n_groups);
}

// ---- the model file ----------------------------------------------------------------------------

// Floats per message when rows travel to rank 0 for the model file (16 MiB).
#define SAVE_CHUNK ((int64_t)1 << 22)

static void mf_groups(const lr_state *s, lr_mf_group *mg) {
  for (int i = 0; i < s->n_groups; i++) {
    memset(&mg[i], 0, sizeof mg[i]);
    strcpy(mg[i].name, s->g[i].name);
    mg[i].n_rows = s->g[i].n_rows, mg[i].width = s->g[i].width;
  }
}

// Rank 0 writes the groups in order as a stream: its own rows of each, then
// every other rank's (row-split groups) in rank order, SAVE_CHUNK floats at
// a time, so no rank ever holds more of a table than its rows plus one
// chunk. The other ranks send only to a rank 0 that could begin; a write
// error on rank 0 after that is remembered (wrc) while the transfer
// completes, so no sender is left blocked. An MPI error ends the transfer
// (it aborts the job).
int state_save_model(lr_state *s, const char *path, const char *config_json,
                     const lr_dataset *ids) {
  const int P = dist_size(), me = dist_rank();
  lr_modelfile_writer *w = NULL;
  float *chunk = NULL;
  int rc = LR_OK;
  if (me == 0) {
    lr_mf_group mg[LR_MAX_GROUPS];
    mf_groups(s, mg);
    rc = modelfile_begin(&w, path, config_json, mg, s->n_groups);
    if (rc == LR_OK && ids) { // the id maps (section 4): rank 0 holds the whole dataset
      lr_names un, in;
      rc = data_id_names(ids, &un, &in);
      if (rc == LR_OK) {
        rc = modelfile_set_ids(w, &un, &in);
        if (rc != LR_OK) w = NULL; // abandoned by set_ids
        names_free(&un);
        names_free(&in);
      }
    }
    if (rc == LR_OK && P > 1 &&
        !(chunk = lr_calloc((size_t)SAVE_CHUNK, sizeof *chunk, "model file chunk")))
      rc = LR_ERR_NOMEM;
  }
  int wrc = rc;
  if (P > 1) rc = dist_agree(rc);
  for (int i = 0; i < s->n_groups && rc == LR_OK; i++) {
    const lr_group *g = &s->g[i];
    if (me == 0 && wrc == LR_OK) wrc = modelfile_append(w, g->w, group_floats(g));
    const int split = g->kind == LR_GROUP_ROWS && g->place != LR_PLACE_REPLICATED;
    for (int q = 1; split && q < P && rc == LR_OK; q++) {
      int64_t lo, hi;
      group_range(s, i, q, &lo, &hi);
      const int64_t n = (hi - lo) * g->width;
      for (int64_t off = 0; off < n && rc == LR_OK; off += SAVE_CHUNK) {
        const int64_t k = n - off < SAVE_CHUNK ? n - off : SAVE_CHUNK;
        if (me == q) rc = dist_send_f(g->w + off, k, 0);
        if (me == 0 && (rc = dist_recv_f(chunk, k, q)) == LR_OK && wrc == LR_OK)
          wrc = modelfile_append(w, chunk, (size_t)k);
      }
    }
  }
  if (rc == LR_OK) rc = wrc;
  if (me == 0) {
    if (rc == LR_OK)
      rc = modelfile_commit(w);
    else
      modelfile_abandon(w);
  }
  lr_free(chunk);
  return P > 1 ? dist_agree(rc) : rc;
}

int state_load_model(lr_state *s, const char *path) {
  lr_mf_group mg[LR_MAX_GROUPS];
  lr_mf_dest d[LR_MAX_GROUPS];
  mf_groups(s, mg);
  for (int i = 0; i < s->n_groups; i++)
    d[i] = (lr_mf_dest){s->g[i].name, s->g[i].lo, s->g[i].hi, s->g[i].w};
  return dist_agree(modelfile_read(path, mg, s->n_groups, d, s->n_groups));
}
