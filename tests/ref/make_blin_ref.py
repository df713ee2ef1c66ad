#!/usr/bin/python3
"""make_blin_ref.py: the recorded PyTorch reference of Blin (README, "Blin as
built"), replayed by tests/test_torch_ref.c like make_ref.py's dumps.

The sasrec encoder of make_ref.py with the `blin` attention kind:
  per head  softmax_row(Q) (softmax_col(K)^T V)  (column softmax over the key
            positions: valid and not a delimiter)
  plus      DWC(V): Conv1d(D, D, 5, padding=2, groups=D) with bias over the
            sequence, its input 0 at delimiters and padding
  the kind's parameters attn_p (L, 5D + D): the (D,5) filters then the bias.
Two views per example given as input ids (RandomPad's output: the history
repeated with delimiters, id 0, inside the valid length), view v of example
p at sequence v*P + p (the trainer's layout); a delimiter is a masked key
and embeds as the padding item (0) plus its position. Dropout 0, lambda 2:
  loss = mean_p [ (CE_a + CE_b)/2 + lambda (KL(pa||pb) + KL(pb||pa))/2 ]
over the full catalog at each view's last position. Gradients and 10 Adam
steps as make_ref.py. The header's flags word (offset 104) is 8 (REF_BLIN);
the targets are P = B/2, one per example.

A third dump, blin_blin_relu.bin (flags 8 | 16 = REF_RELU), has Blin's ReLU
FFN (model.ffn=relu) at init std 0.2.

Run with Debian's torch: /usr/bin/python3 tests/ref/make_blin_ref.py [outdir]
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_ref as base  # noqa: E402

I, N, D, H, L, FF = 23, 10, 16, 2, 2, 24
PAIRS = 3
B = 2 * PAIRS
DH = D // H
K = 5
LAMBDA = 2.0
SEED = 20261207
KINDS = {'blin': 8}  # its id in core/attention.c's registry
INITS = {'': 0.02, '_wide': 0.2}
ARCH = ''
REF_BLIN = 8
REF_RELU = 16  # the FFN's activation is ReLU (model.ffn=relu)
ACT = {'gelu': F.gelu, 'relu': F.relu}
FFN = 'gelu'  # set by main for each dump
# the histories of the 3 examples and each view's alpha (RandomPad, Eq. 4)
HIST_LENS = [3, 2, 6]
ALPHAS = [[2, 1], [3, 2], [1, 1]]  # 3 copies of 3 + 2 delimiters = 11 > N: truncated


def _shapes():
    return [
        ('pos', (N, D)), ('ln0_w', (D,)), ('ln0_b', (D,)),
        ('qkv_w', (L, 3 * D, D)), ('qkv_b', (L, 3 * D)),
        ('o_w', (L, D, D)), ('o_b', (L, D)), ('ln1_w', (L, D)), ('ln1_b', (L, D)),
        ('fc1_w', (L, FF, D)), ('fc1_b', (L, FF)), ('fc2_w', (L, D, FF)), ('fc2_b', (L, D)),
        ('ln2_w', (L, D)), ('ln2_b', (L, D)), ('attn_p', (L, K * D + D)),
    ]


PARAM_SHAPES = _shapes()


def make_params(gen, std):
    P = {}
    for name, shape in PARAM_SHAPES:
        if name == 'attn_p':
            t = (2 * torch.rand(shape, generator=gen) - 1) / math.sqrt(K)
        elif name.endswith('_w') and name.startswith('ln'):
            t = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif name.startswith('ln'):
            t = 0.05 * torch.randn(shape, generator=gen)
        else:
            t = std * torch.randn(shape, generator=gen)
        P[name] = t.float()
    table = (std * torch.randn((I + 1, D), generator=gen)).float()
    table[0] = 0
    return P, table


def randompad(s, alpha):
    full = []
    for c in range(alpha + 1):
        if c:
            full.append(0)
        full += s
    return full[-N:]


def make_batch(gen):
    ids = torch.zeros((B, N), dtype=torch.long)
    lens = torch.zeros(B, dtype=torch.long)
    hist = [torch.randint(1, I + 1, (n,), generator=gen).tolist() for n in HIST_LENS]
    for v in range(2):
        for p in range(PAIRS):
            view = randompad(hist[p], ALPHAS[p][v])
            ids[v * PAIRS + p, :len(view)] = torch.tensor(view)
            lens[v * PAIRS + p] = len(view)
    tgt = torch.randint(1, I + 1, (PAIRS,), generator=gen)
    return ids, lens, tgt


def attention(q, k, v, key):
    """q, k, v (B,H,N,Dh); key (B,N) bool: the key positions."""
    qs = q.softmax(-1)
    ks = k.masked_fill(~key[:, None, :, None], float('-inf')).softmax(-2)
    return qs @ (ks.transpose(-1, -2) @ v)


def forward(P, table, ids, lens, kind):
    valid = torch.arange(N)[None, :] < lens[:, None]
    key = valid & (ids != 0)
    ln = lambda x, w, b: F.layer_norm(x, (D,), w, b, base.LN_EPS)
    x = ln(F.embedding(ids, table, padding_idx=0) + P['pos'][None], P['ln0_w'], P['ln0_b'])
    for l in range(L):
        qkv = x @ P['qkv_w'][l].T + P['qkv_b'][l]
        qd, kd, vd = qkv.split(D, dim=-1)
        q, k, v = (t.reshape(B, N, H, DH).transpose(1, 2) for t in (qd, kd, vd))
        ctx = attention(q, k, v, key).transpose(1, 2).reshape(B, N, D)
        w = P['attn_p'][l][:K * D].reshape(D, 1, K)
        bias = P['attn_p'][l][K * D:]
        vin = (vd * key[:, :, None].to(vd.dtype)).transpose(1, 2)  # (B,D,N)
        ctx = ctx + F.conv1d(vin, w, bias, padding=(K - 1) // 2, groups=D).transpose(1, 2)
        s = ln(x + ctx @ P['o_w'][l].T + P['o_b'][l], P['ln1_w'][l], P['ln1_b'][l])
        f = ACT[FFN](s @ P['fc1_w'][l].T + P['fc1_b'][l]) @ P['fc2_w'][l].T + P['fc2_b'][l]
        x = ln(s + f, P['ln2_w'][l], P['ln2_b'][l])
    return x


def loss_fn(h, table, lens, tgt):
    h_last = h[torch.arange(B), lens - 1]
    za = h_last[:PAIRS] @ table[1:].T
    zb = h_last[PAIRS:] @ table[1:].T
    ce = 0.5 * (F.cross_entropy(za, tgt - 1, reduction='none') +
                F.cross_entropy(zb, tgt - 1, reduction='none'))
    la, lb = za.log_softmax(-1), zb.log_softmax(-1)
    kl = (la.exp() * (la - lb)).sum(-1) + (lb.exp() * (lb - la)).sum(-1)
    return (ce + LAMBDA * 0.5 * kl).mean()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.set_num_threads(1)
    m = sys.modules[__name__]
    global FFN
    runs = [(kind, suffix, std, 'gelu') for kind in KINDS for suffix, std in INITS.items()]
    runs.append(('blin', '_relu', 0.2, 'relu'))  # Blin's FFN (model.ffn=relu)
    for kind, suffix, std, FFN in runs:
        r = base.run_kind(kind, std, m)
        path = os.path.join(out, 'blin_%s%s.bin' % (kind, suffix))
        base.write_dump(path, kind, std, r, m)
        flags = REF_BLIN | (REF_RELU if FFN == 'relu' else 0)
        with open(path, 'r+b') as f:  # the flags word
            f.seek(104)
            f.write(flags.to_bytes(4, 'little'))
        print('%s: loss %.6f, Adam losses %s, %d bytes' % (
            path, float(r['loss']), ' '.join('%.5f' % x for x in r['losses'].tolist()),
            os.path.getsize(path)))


if __name__ == '__main__':
    main()
