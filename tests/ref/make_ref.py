#!/usr/bin/python3
"""make_ref.py: the recorded PyTorch reference of the whole encoder.

Builds, in PyTorch, the sasrec encoder (core/arch_sasrec.c; core/README.md,
"Architectures") with tiny shapes and writes binary dumps that
tests/test_torch_ref.c replays, one per attention kind and initialisation
scale:

  E   = ItemEmb[s_t] + PosEmb[t]                 (item 0 = padding, row 0 = 0)
  H^0 = LayerNorm(E)                             (dropout 0 here)
  per layer (post-LN, RecBole):
    S = LayerNorm(H + MultiHead(H) W_O^T + b_O)
    H = LayerNorm(S + W2 gelu(W1 S + b1) + b2)   (exact erf GELU)
  loss = mean_b CE(h_b,last @ ItemEmb[1:]^T, target_b - 1)   (positions=last)

Attention kinds (Dh = D/H, right padding, n = lens[b] valid positions):
  softmax      softmax(Q K^T / sqrt(Dh) + causal mask + key-padding mask) V
  linrec_code  the released LinRec code (RecBole layers.py):
                 Qn = normalize(elu(Q)), Kn = normalize(elu(K)),
                 out = Qn (Kn^T V) / sqrt(Dh)
               ONE DEVIATION, on purpose: rows of Kn at padded positions are
               zeroed (the released code lets padded keys/values contribute;
               core/attention.h says padded key rows never contribute, and a
               right-padded batch must not change a sequence's output).
Outputs at padded query positions are unspecified in C (it writes 0), so the
test compares hidden states at valid positions only; nothing valid depends on
them, so loss and gradients are comparable everywhere.

Two initialisations per kind: the paper's N(0, 0.02) (model_<kind>.bin), where
attention is nearly uniform at these tiny shapes, and N(0, 0.2)
(model_<kind>_wide.bin), where it is not, so that an error in the scores
(scale, mask) moves the hidden states by far more than the tolerance.

The forward/backward runs in float64 (parameters are generated in float32 and
converted exactly), so the dump is the float32 rounding of the exact answer
and the C test measures the C float error alone. Then 10 steps of
torch.optim.Adam (bias-corrected, the formula of core/optim.h adam_update)
on the same batch give 10 losses, each taken before its update.

Run with Debian's torch: /usr/bin/python3 tests/ref/make_ref.py [outdir]
(default: the folder of this script). Deterministic: a torch.Generator seeded 20240611.

File layout (all little-endian; written by write_dump, read by test_torch_ref.c):
  header, 128 bytes:
    0   char[8]  magic "LRTREF\\0\\0"
    8   u32      version (1)
    12  i32      attention kind, the lr_attn_kind value of core/attention.h
    16  i32 x 8  I (items), N (max_len), D, H, L, F (inner), B (batch), S (Adam steps)
    48  f32 x 5  ln_eps, adam lr, beta1, beta2, adam eps
    68  char[16] attention kind name, NUL padded
    84  f32      init std of the weights and biases (0.02 or 0.2)
    88  char[16] architecture name, NUL padded; zeros (as written here) = sasrec
                 (make_recgrela_ref.py writes "recgrela")
    104 zero     reserved up to 128
  payload, in this order:
    f32  the 15 parameter tensors in the arena order of core/model.h:
         pos (N,D), ln0_w (D), ln0_b (D), qkv_w (L,3D,D), qkv_b (L,3D),
         o_w (L,D,D), o_b (L,D), ln1_w (L,D), ln1_b (L,D), fc1_w (L,F,D),
         fc1_b (L,F), fc2_w (L,D,F), fc2_b (L,D), ln2_w (L,D), ln2_b (L,D)
    f32  item table (I+1,D), row 0 = 0
    i32  ids (B,N) (0 = padding, right padded), lens (B), targets (B) in 1..I
    f32  final hidden states (B,N,D) (padded positions: PyTorch's values)
    f32  loss (1)
    f32  the 15 parameter gradients, same order and shapes
    f32  item table gradient (I+1,D)
    f32  Adam step losses (S)
  trailer: char[8] "LRTREND\\0"
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

I, N, D, H, L, FF, B = 23, 8, 16, 2, 2, 24, 4
DH = D // H
LN_EPS = 1e-12
STEPS, LR, BETA1, BETA2, ADAM_EPS = 10, 1e-3, 0.9, 0.999, 1e-8
SEED = 20240611
KINDS = {'softmax': 0, 'linrec_code': 2}  # lr_attn_kind values (core/attention.h)
INITS = {'': 0.02, '_wide': 0.2}  # file suffix: init std (see above)
ARCH = ''  # the architecture's name in the header ('' = sasrec)
LENS = [8, 5, 3, 1]  # one full-length sequence, one of length 1
MAGIC, TRAILER, VERSION, HEADER_BYTES = b'LRTREF\0\0', b'LRTREND\0', 1, 128

PARAM_SHAPES = [  # arena order of the sasrec tensor table (core/arch_sasrec.c)
    ('pos', (N, D)), ('ln0_w', (D,)), ('ln0_b', (D,)),
    ('qkv_w', (L, 3 * D, D)), ('qkv_b', (L, 3 * D)),
    ('o_w', (L, D, D)), ('o_b', (L, D)), ('ln1_w', (L, D)), ('ln1_b', (L, D)),
    ('fc1_w', (L, FF, D)), ('fc1_b', (L, FF)), ('fc2_w', (L, D, FF)), ('fc2_b', (L, D)),
    ('ln2_w', (L, D)), ('ln2_b', (L, D)),
]


def make_params(gen, std):
    """Weights, position and item rows N(0, std) (the paper: 0.02); biases
    N(0, std) and LayerNorm (1 + N(0, 0.1), N(0, 0.05)) so that their gradients
    are exercised."""
    P = {}
    for name, shape in PARAM_SHAPES:
        if name.endswith('_w') and name.startswith('ln'):
            t = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif name.startswith('ln'):
            t = 0.05 * torch.randn(shape, generator=gen)
        else:  # pos, weights, biases
            t = std * torch.randn(shape, generator=gen)
        P[name] = t.float()
    table = (std * torch.randn((I + 1, D), generator=gen)).float()
    table[0] = 0
    return P, table


def make_batch(gen, spec=None):
    """ids (B,N) right padded to the lengths LENS, lens, targets; spec: the
    module whose B, N, I, LENS to use (default this one)."""
    m = spec or sys.modules[__name__]
    ids = torch.zeros((m.B, m.N), dtype=torch.long)
    for b, n in enumerate(m.LENS):
        ids[b, :n] = torch.randint(1, m.I + 1, (n,), generator=gen)
    lens = torch.tensor(m.LENS, dtype=torch.long)
    tgt = torch.randint(1, m.I + 1, (m.B,), generator=gen)
    return ids, lens, tgt


def attention(q, k, v, valid, kind):
    """q, k, v (B,H,N,Dh); valid (B,N) bool. Returns (B,H,N,Dh)."""
    if kind == 'softmax':
        att = q @ k.transpose(-1, -2) / math.sqrt(DH)
        causal = torch.ones(N, N, dtype=torch.bool).tril()
        mask = causal[None, None] & valid[:, None, None, :]
        att = att.masked_fill(~mask, float('-inf'))
        return att.softmax(-1) @ v
    # released LinRec code, plus the zeroed padded key rows (module docstring)
    qn = F.normalize(F.elu(q), dim=-1)
    kn = F.normalize(F.elu(k), dim=-1) * valid[:, None, :, None].to(k.dtype)
    return qn @ (kn.transpose(-1, -2) @ v) / math.sqrt(DH)


def forward(P, table, ids, lens, kind):
    """Final hidden states (B,N,D) of the encoder (dropout 0)."""
    valid = torch.arange(N)[None, :] < lens[:, None]
    ln = lambda x, w, b: F.layer_norm(x, (D,), w, b, LN_EPS)
    x = ln(F.embedding(ids, table, padding_idx=0) + P['pos'][None], P['ln0_w'], P['ln0_b'])
    for l in range(L):
        qkv = x @ P['qkv_w'][l].T + P['qkv_b'][l]  # Q rows 0..D-1, K D..2D-1, V 2D..3D-1
        q, k, v = (t.reshape(B, N, H, DH).transpose(1, 2) for t in qkv.split(D, dim=-1))
        ctx = attention(q, k, v, valid, kind).transpose(1, 2).reshape(B, N, D)
        s = ln(x + ctx @ P['o_w'][l].T + P['o_b'][l], P['ln1_w'][l], P['ln1_b'][l])
        f = F.gelu(s @ P['fc1_w'][l].T + P['fc1_b'][l]) @ P['fc2_w'][l].T + P['fc2_b'][l]
        x = ln(s + f, P['ln2_w'][l], P['ln2_b'][l])
    return x


def loss_fn(h, table, lens, tgt):
    """Full-catalog CE at each sequence's last valid position; item 0 is no candidate."""
    h_last = h[torch.arange(B), lens - 1]
    return F.cross_entropy(h_last @ table[1:].T, tgt - 1)


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy().astype('<f4').tobytes()


def i32(t):
    return t.detach().contiguous().numpy().astype('<i4').tobytes()


def run_kind(kind, std, spec=None):
    """One dump's content for `kind` at init std `std`. spec: the module that
    defines the model (SEED, make_params, make_batch, forward, loss_fn;
    default this one; make_recgrela_ref.py passes itself)."""
    m = spec or sys.modules[__name__]
    gen = torch.Generator().manual_seed(m.SEED)
    P32, table32 = m.make_params(gen, std)
    ids, lens, tgt = m.make_batch(gen)
    P = {k: v.double().requires_grad_() for k, v in P32.items()}
    table = table32.double().requires_grad_()
    h = m.forward(P, table, ids, lens, kind)
    loss = m.loss_fn(h, table, lens, tgt)
    loss.backward()
    grads = {k: v.grad.clone() for k, v in P.items()}
    tgrad = table.grad.clone()
    assert float(tgrad[0].abs().max()) == 0.0
    # Adam on the same batch: fresh copies of the same starting point.
    Pa = {k: v.double().requires_grad_() for k, v in P32.items()}
    ta = table32.double().requires_grad_()
    opt = torch.optim.Adam(list(Pa.values()) + [ta], lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        la = m.loss_fn(m.forward(Pa, ta, ids, lens, kind), ta, lens, tgt)
        la.backward()
        opt.step()
        losses.append(float(la))
    assert abs(losses[0] - float(loss)) < 1e-12
    return dict(P=P32, table=table32, ids=ids, lens=lens, tgt=tgt, h=h, loss=loss,
                grads=grads, tgrad=tgrad, losses=torch.tensor(losses))


def write_dump(path, kind, std, r, spec=None):
    """Write r (run_kind's) to path; spec as run_kind's (its I N D H L FF B,
    KINDS, PARAM_SHAPES and ARCH, the architecture's name: '' = sasrec)."""
    m = spec or sys.modules[__name__]
    hdr = MAGIC + struct.pack('<Ii', VERSION, m.KINDS[kind])
    hdr += struct.pack('<8i', m.I, m.N, m.D, m.H, m.L, m.FF, m.B, STEPS)
    hdr += struct.pack('<5f', LN_EPS, LR, BETA1, BETA2, ADAM_EPS)
    hdr += kind.encode().ljust(16, b'\0')
    hdr += struct.pack('<f', std)
    hdr += m.ARCH.encode().ljust(16, b'\0')
    hdr = hdr.ljust(HEADER_BYTES, b'\0')
    body = [f32(r['P'][name]) for name, _ in m.PARAM_SHAPES]
    body += [f32(r['table']), i32(r['ids']), i32(r['lens']), i32(r['tgt'])]
    body += [f32(r['h']), f32(r['loss'].reshape(1))]
    body += [f32(r['grads'][name]) for name, _ in m.PARAM_SHAPES]
    body += [f32(r['tgrad']), f32(r['losses']), TRAILER]
    with open(path, 'wb') as f:
        f.write(hdr + b''.join(body))


def main(spec=None, prefix='model'):
    """Every kind x init of spec (default this module) as PREFIX_<kind><suffix>.bin
    in argv[1] (default: this script's folder)."""
    m = spec or sys.modules[__name__]
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.set_num_threads(1)
    for kind in m.KINDS:
        for suffix, std in m.INITS.items():
            r = run_kind(kind, std, m)
            path = os.path.join(out, '%s_%s%s.bin' % (prefix, kind, suffix))
            write_dump(path, kind, std, r, m)
            print('%s: loss %.6f, Adam losses %s, %d bytes' % (
                path, float(r['loss']), ' '.join('%.5f' % x for x in r['losses'].tolist()),
                os.path.getsize(path)))


if __name__ == '__main__':
    main()
