#!/usr/bin/python3
"""make_ram_ref.py: the recorded PyTorch reference of the ram architecture
(core/arch_ram.c), ported from the released RAM (github BoPeng112/RAM,
models/RAM.py RAM.log2feats and RAM.forward, main.py's loss and optimiser)
(STYLE 21b).

The released training path, over explicit parameter tensors (so that they
can be dumped in linrec's arena order), tiny shapes, three blocks:
  seqs = ItemEmb[s] * sqrt(D) + PosEmb[positions]; seqs *= ~padding   (emb_dropout p = 0)
  Q = seqs; per block i:
    QQ = attention_layernorms[i](Q)
    Q  = Q + MultiheadAttention(QQ, seqs, seqs, causal attn_mask)      (F.multi_head_attention_forward,
                                                                        the module's own function)
    QQ = forward_layernorms[i](Q)
    Q  = PointWiseFeedForward(QQ) = conv2(gelu(conv1(QQ))) + QQ       (Conv1d, kernel 1; dropout p = 0)
  log_feats = last_layernorm(Q) + user_emb[u]                          (LayerNorm eps 1e-8)
  pos_logits = log_feats . ItemEmb[pos], neg_logits = log_feats . ItemEmb[neg]
  loss = BCE(pos_logits[pos != 0], 1) + BCE(neg_logits[pos != 0], 0)  (main.py)
  torch.optim.Adam(betas=(0.9, 0.98)), lr 1e-3, 10 steps on the same batch.

Deviations of this port from the released code, on purpose:
  - right padding with a key-padding mask instead of the released left
    padding (whose padded keys, zero rows of seqs, still enter the softmax
    through the K/V biases): linrec's batches are right padded and a padded
    batch must not change a sequence's output. The positions keep the
    released left-padding semantics (the last item at position N-1: p(t) =
    N - n + t, model.ram.pos_from=end).
  - dropout 0 (emb_dropout, the MultiheadAttention's, the FFN's).
  - float64 throughout (parameters drawn in float32 and converted exactly),
    so the dump is the float32 rounding of the exact answer.
  - the user table holds the batch's users only (one row per sequence, B
    rows) drawn N(0, std) (linrec starts it at zero, which would hide
    nothing here but exercise less); parameters are drawn as make_ref.py
    does (biases and LayerNorm non-trivial so their gradients are
    exercised), weights N(0, std) with std 0.02 (the released init of the
    embeddings and out_proj) or 0.2 (`_wide`: attention far from uniform).
  - negatives are fixed per position, never the target nor an item of the
    sequence (the released sampler skips the user's history).
Two batches of the loss: `all` (main.py: a loss at every valid position,
the released training) and `last` (only each sequence's last valid position,
linrec's train.positions=last; C replays it through the fast path).

The port was checked against the released module itself (RAM.py loaded with
these parameters, float64, dropout 0): on full-length sequences, where the
two paddings agree, log2feats is the same to the last bit (max difference
0) and the isEval path's last row within 1.1e-15; on a sequence of 3 in a
window of 8 the released left padding moves the outputs by up to 1.36 (its
padded keys): run `make_ram_ref.py --check-released PATH/models/RAM.py`.

Run with Debian's torch: /usr/bin/python3 tests/ref/make_ram_ref.py [outdir]
(default: the folder of this script). Deterministic (a torch.Generator seeded
20250617). The file format is make_ref.py's (version 1, architecture "ram" at
header offset 88), with the reserved header bytes used:
    104 u32  flags: 1 = a loss row at every valid position (targets and
             negatives (B,N), 0 at padding; else (B)), 2 = BCE with one
             negative per loss row (the negatives follow the targets),
             4 = a users row per sequence (users (B,D) after the item table,
             their gradient (B,D) after the item table's gradient)
    108 f32  the embedding scale (sqrt(D))
    112 u32  positions counted from the end (1)
and the parameters in core/arch_ram.c's arena order:
  pos (N,D), lnf_w (D), lnf_b (D), ln1_w (L,D), ln1_b (L,D), q_w (L,D,D),
  q_b (L,D), kv_w (L,2D,D), kv_b (L,2D), o_w (L,D,D), o_b (L,D), ln2_w (L,D),
  ln2_b (L,D), fc1_w (L,F,D), fc1_b (L,F), fc2_w (L,D,F), fc2_b (L,D)
(q_w|kv_w is the released in_proj_weight, fc1_w and fc2_w its Conv1d
weights without their kernel axis).
"""
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_ref  # noqa: E402  the header constants, the batch and the encoders of values

I, N, D, H, L, FF, B = 23, 8, 16, 2, 3, 16, 4  # FF = D: the released FFN is D wide
LN_EPS = 1e-8
STEPS, LR, BETA1, BETA2, ADAM_EPS = 10, 1e-3, 0.9, 0.98, 1e-8
SEED = 20250617
KINDS = {'softmax': 0}
INITS = {'': 0.02, '_wide': 0.2}
LOSSES = {'all': 1, 'last': 0}  # the flags' bit 0
LENS = [8, 5, 3, 1]
ARCH = 'ram'
FLAG_ALL, FLAG_BCE, FLAG_USERS = 1, 2, 4

PARAM_SHAPES = [
    ('pos', (N, D)), ('lnf_w', (D,)), ('lnf_b', (D,)),
    ('ln1_w', (L, D)), ('ln1_b', (L, D)),
    ('q_w', (L, D, D)), ('q_b', (L, D)), ('kv_w', (L, 2 * D, D)), ('kv_b', (L, 2 * D)),
    ('o_w', (L, D, D)), ('o_b', (L, D)),
    ('ln2_w', (L, D)), ('ln2_b', (L, D)),
    ('fc1_w', (L, FF, D)), ('fc1_b', (L, FF)), ('fc2_w', (L, D, FF)), ('fc2_b', (L, D)),
]


def make_params(gen, std):
    P = {}
    for name, shape in PARAM_SHAPES:
        if name.startswith('ln') and name.endswith('_w'):
            t = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif name.startswith('ln'):
            t = 0.05 * torch.randn(shape, generator=gen)
        else:
            t = std * torch.randn(shape, generator=gen)
        P[name] = t.float()
    table = (std * torch.randn((I + 1, D), generator=gen)).float()
    table[0] = 0
    users = (std * torch.randn((B, D), generator=gen)).float()
    return P, table, users


def make_batch(gen, last):
    """ids (B,N) right padded, lens, targets and negatives ((B,N) with 0 at
    padding, or (B) for `last`): the next item of each position (random),
    negatives never the target nor an item of the sequence."""
    ids, lens, _ = make_ref.make_batch(gen, sys.modules[__name__])
    tgt = torch.zeros((B, N), dtype=torch.long)
    neg = torch.zeros((B, N), dtype=torch.long)
    for b, n in enumerate(LENS):
        tgt[b, :n] = torch.randint(1, I + 1, (n,), generator=gen)
        seen = set(ids[b, :n].tolist()) | set(tgt[b, :n].tolist())
        for t in range(n):
            v = int(torch.randint(1, I + 1, (1,), generator=gen))
            while v in seen:
                v = int(torch.randint(1, I + 1, (1,), generator=gen))
            neg[b, t] = v
    if last:
        tgt = tgt[torch.arange(B), lens - 1]
        neg = neg[torch.arange(B), lens - 1]
    return ids, lens, tgt, neg


def log2feats(P, table, users, ids, lens):
    """RAM.log2feats, the training path (isEval False), right padded (module docstring)."""
    valid = torch.arange(N)[None, :] < lens[:, None]
    ln = lambda x, w, b: F.layer_norm(x, (D,), w, b, LN_EPS)
    seqs = F.embedding(ids, table, padding_idx=0) * D ** 0.5
    positions = ((N - lens)[:, None] + torch.arange(N)[None, :]).clamp(max=N - 1)
    seqs = seqs + P['pos'][positions]
    seqs = seqs * valid[..., None].to(seqs.dtype)
    attention_mask = ~torch.tril(torch.ones((N, N), dtype=torch.bool))
    Q = seqs
    seqs_t = seqs.transpose(0, 1)
    for i in range(L):
        Qt = Q.transpose(0, 1)
        QQ = ln(Qt, P['ln1_w'][i], P['ln1_b'][i])
        mha, _ = F.multi_head_attention_forward(
            QQ, seqs_t, seqs_t, D, H,
            torch.cat([P['q_w'][i], P['kv_w'][i]]), torch.cat([P['q_b'][i], P['kv_b'][i]]),
            None, None, False, 0.0, P['o_w'][i], P['o_b'][i], training=True,
            key_padding_mask=~valid, need_weights=False, attn_mask=attention_mask)
        Q = (Qt + mha).transpose(0, 1)
        QQ = ln(Q, P['ln2_w'][i], P['ln2_b'][i])
        h = F.conv1d(QQ.transpose(-1, -2), P['fc1_w'][i][:, :, None], P['fc1_b'][i])
        h = F.conv1d(F.gelu(h), P['fc2_w'][i][:, :, None], P['fc2_b'][i])
        Q = h.transpose(-1, -2) + QQ
    return ln(Q, P['lnf_w'], P['lnf_b']) + users[:, None, :]


def loss_fn(feats, table, lens, tgt, neg, last):
    """main.py: BCE of the target against 1 and of the negative against 0,
    each a mean over the loss rows (every valid position, or the last)."""
    if last:
        feats = feats[torch.arange(B), lens - 1]
        rows = torch.ones(B, dtype=torch.bool)
    else:
        rows = tgt != 0
    pos_logits = (feats * F.embedding(tgt, table)).sum(-1)[rows]
    neg_logits = (feats * F.embedding(neg, table)).sum(-1)[rows]
    return (F.binary_cross_entropy_with_logits(pos_logits, torch.ones_like(pos_logits)) +
            F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits)))


def run(std, last):
    gen = torch.Generator().manual_seed(SEED)
    P32, table32, users32 = make_params(gen, std)
    ids, lens, tgt, neg = make_batch(gen, last)

    def fresh():
        return ({k: v.double().requires_grad_() for k, v in P32.items()},
                table32.double().requires_grad_(), users32.double().requires_grad_())

    P, table, users = fresh()
    h = log2feats(P, table, users, ids, lens)
    loss = loss_fn(h, table, lens, tgt, neg, last)
    loss.backward()
    assert float(table.grad[0].abs().max()) == 0.0
    Pa, ta, ua = fresh()
    opt = torch.optim.Adam(list(Pa.values()) + [ta, ua], lr=LR, betas=(BETA1, BETA2),
                           eps=ADAM_EPS)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        la = loss_fn(log2feats(Pa, ta, ua, ids, lens), ta, lens, tgt, neg, last)
        la.backward()
        opt.step()
        losses.append(float(la))
    assert abs(losses[0] - float(loss)) < 1e-12
    return dict(P=P32, table=table32, users=users32, ids=ids, lens=lens, tgt=tgt, neg=neg, h=h,
                loss=loss, grads={k: v.grad for k, v in P.items()}, tgrad=table.grad,
                ugrad=users.grad, losses=torch.tensor(losses))


def write(path, kind, std, flags, r):
    f32, i32 = make_ref.f32, make_ref.i32
    hdr = make_ref.MAGIC + struct.pack('<Ii', make_ref.VERSION, KINDS[kind])
    hdr += struct.pack('<8i', I, N, D, H, L, FF, B, STEPS)
    hdr += struct.pack('<5f', LN_EPS, LR, BETA1, BETA2, ADAM_EPS)
    hdr += kind.encode().ljust(16, b'\0')
    hdr += struct.pack('<f', std)
    hdr += ARCH.encode().ljust(16, b'\0')
    hdr += struct.pack('<IfI', flags, math.sqrt(D), 1)
    hdr = hdr.ljust(make_ref.HEADER_BYTES, b'\0')
    body = [f32(r['P'][name]) for name, _ in PARAM_SHAPES]
    body += [f32(r['table']), f32(r['users']), i32(r['ids']), i32(r['lens']), i32(r['tgt']),
             i32(r['neg']), f32(r['h']), f32(r['loss'].reshape(1))]
    body += [f32(r['grads'][name]) for name, _ in PARAM_SHAPES]
    body += [f32(r['tgrad']), f32(r['ugrad']), f32(r['losses']), make_ref.TRAILER]
    with open(path, 'wb') as f:
        f.write(hdr + b''.join(body))


def check_released(path):
    """Load the released models/RAM.py at path, give it this port's
    parameters and compare log2feats (module docstring)."""
    import importlib.util
    import types
    import numpy as np
    spec = importlib.util.spec_from_file_location('ram_released', path)
    rel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rel)
    args = types.SimpleNamespace(device='cpu', hidden_units=D, maxlen=N, dropout_rate=0.0,
                                 num_blocks=L, num_heads=H)
    model = rel.RAM(B, I, args).double().eval()
    gen = torch.Generator().manual_seed(SEED)
    P32, table32, users32 = make_params(gen, 0.2)
    with torch.no_grad():
        model.item_emb.weight.copy_(table32)
        model.user_emb.weight[1:].copy_(users32)
        model.pos_emb.weight.copy_(P32['pos'])
        model.last_layernorm.weight.copy_(P32['lnf_w'])
        model.last_layernorm.bias.copy_(P32['lnf_b'])
        for i in range(L):
            a, f = model.attention_layers[i], model.forward_layers[i]
            for ln, w in ((model.attention_layernorms[i], 'ln1'), (model.forward_layernorms[i], 'ln2')):
                ln.weight.copy_(P32[w + '_w'][i])
                ln.bias.copy_(P32[w + '_b'][i])
            a.in_proj_weight.copy_(torch.cat([P32['q_w'][i], P32['kv_w'][i]]))
            a.in_proj_bias.copy_(torch.cat([P32['q_b'][i], P32['kv_b'][i]]))
            a.out_proj.weight.copy_(P32['o_w'][i])
            a.out_proj.bias.copy_(P32['o_b'][i])
            f.conv1.weight.copy_(P32['fc1_w'][i][:, :, None])
            f.conv1.bias.copy_(P32['fc1_b'][i])
            f.conv2.weight.copy_(P32['fc2_w'][i][:, :, None])
            f.conv2.bias.copy_(P32['fc2_b'][i])
    P = {k: v.double() for k, v in P32.items()}
    users = np.arange(1, B + 1)
    ids = torch.randint(1, I + 1, (B, N), generator=gen)
    full = torch.full((B,), N, dtype=torch.long)
    mine = log2feats(P, table32.double(), users32.double(), ids, full)
    theirs = model.log2feats(ids.numpy(), users, isEval=False)[0]
    last = model.log2feats(ids.numpy(), users, isEval=True)[0][:, -1]
    print('full length: max |released - port| = %.3g; isEval last row: %.3g' % (
        float((theirs - mine).abs().max()), float((last - mine[:, -1]).abs().max())))
    n = 3
    right, left = torch.zeros_like(ids), torch.zeros_like(ids)
    right[:, :n], left[:, N - n:] = ids[:, :n], ids[:, :n]
    mine = log2feats(P, table32.double(), users32.double(), right, torch.full((B,), n))
    theirs = model.log2feats(left.numpy(), users, isEval=False)[0]
    print('length %d of %d: max |released (left padded) - port (right padded)| = %.3g' % (
        n, N, float((theirs[:, N - n:] - mine[:, :n]).abs().max())))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--check-released':
        return check_released(sys.argv[2])
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.set_num_threads(1)
    for kind in KINDS:
        for loss_name, all_rows in LOSSES.items():
            for suffix, std in INITS.items():
                r = run(std, not all_rows)
                path = os.path.join(out, 'ram_%s_%s%s.bin' % (kind, loss_name, suffix))
                write(path, kind, std, FLAG_BCE | FLAG_USERS | (FLAG_ALL if all_rows else 0), r)
                print('%s: loss %.6f, Adam losses %s, %d bytes' % (
                    path, float(r['loss']), ' '.join('%.5f' % x for x in r['losses'].tolist()),
                    os.path.getsize(path)))


if __name__ == '__main__':
    main()
