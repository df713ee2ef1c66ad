#!/usr/bin/python3
"""make_recgrela_ref.py: the recorded PyTorch reference of the recgrela
architecture (core/arch_recgrela.c) with the rela attention kinds.

A port of the released RecGRELA (github TBI805/RecGRELA, model/RecGRELA.py:
RecGRELA.forward, GRELA, RotaryEnhancedLinearAttention, RoPE, Mlp) with
dropout and DropPath 0, written over explicit parameter tensors so that they
can be dumped in linrec's arena order; tiny shapes. Per layer (num_layers > 1
form of GRELA.forward):
  H^0 = LayerNorm(ItemEmb[s_t])                (dropout 0; no position embedding)
  X~ = LN1(H); G = SiLU(X~ Wg^T + bg)          (act_proj, act)
  V = X~ Win^T + bin; [Q|K] = V Wqk^T + bqk    (in_proj; attn.qk: q first)
  q, k = elu(Q) + 1, elu(K) + 1; qr, kr = RoPE(q), RoPE(k) over the full width D
  A = qr (kr^T V / L) / (q . mean(k) + 1e-6)   per head (the released
                                               z = 1 / (q @ k.mean + 1e-6),
                                               kv = (kr^T L^-.5) @ (v L^-.5))
  C = SiLU(causal depthwise conv_4(V) + bc)    (causal_conv1d_fn(activation="silu"),
                                               the CUDA path the released log ran)
  X' = H + (A + C) * G Wout^T + bout
  H = X' + W2 GELU(LN2(X') W1^T + b1) + b2     (Mlp, exact GELU)
  loss = mean_b CE(h_b,last @ ItemEmb[1:]^T, target_b - 1)   (positions=last)

Attention kinds (the `kind` of a dump):
  rela_released  the released semantics exactly: every one of the N rows of
                 the right-padded window enters the means (L = N), padded
                 rows included (their embedding row 0 = 0, so LN0 gives its
                 shift). C replays it with the test-registered kind
                 rela_released (core/attn_rela.c).
  rela           linrec's semantics: the means run over the n real rows only
                 (padded rows never contribute).
  rela_causal    the causal form: prefix means over rows 0..t, eps 1e-6 on the
                 prefix mean of k.

Deviations of this port from the released code, on purpose:
  - float64 throughout (parameters drawn in float32 and converted exactly), so
    the dump is the float32 rounding of the exact answer. The released RoPE
    builds its angles and rotations in float32 and casts its input to float32;
    here the angles t * theta_p are exact (as core/grela.h's table). At the
    ML-1M length (t < 200) the float32 angles differ by < 2e-5 rad.
  - the CE excludes item 0 (linrec's loss; RecBole's CE has it as a class and
    masks it only in evaluation), so item row 0 stays 0.
  - biases and LayerNorm parameters are drawn non-trivially (not 0 and 1) so
    that their gradients are exercised; the conv keeps PyTorch's default
    U(+-1/sqrt(4)) bounds; weights N(0, std) with std 0.02 (the released init)
    or 0.2 (`_wide`: attention far from uniform).
Outputs at padded query positions are compared in C only at valid positions.

Run with Debian's torch: /usr/bin/python3 tests/ref/make_recgrela_ref.py [outdir]
(default: the folder of this script). Deterministic (a torch.Generator seeded
20250604). The run (forward, backward, 10 Adam steps) and the writer are
make_ref.py's, given this module. The file format is make_ref.py's (version 1), with the
architecture's name at header offset 88 (char[16]; zeros there = sasrec) and
the parameters in core/arch_recgrela.c's arena order:
  ln0_w (D), ln0_b (D), ln1_w (L,D), ln1_b (L,D), g_w (L,D,D), g_b (L,D),
  in_w (L,D,D), in_b (L,D), qk_w (L,2D,D), qk_b (L,2D), conv_w (L,D,4),
  conv_b (L,D), out_w (L,D,D), out_b (L,D), ln2_w (L,D), ln2_b (L,D),
  fc1_w (L,F,D), fc1_b (L,F), fc2_w (L,D,F), fc2_b (L,D)
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_ref  # noqa: E402  the run (forward, backward, Adam) and the writer

I, N, D, H, L, FF, B = 23, 10, 16, 4, 2, 64, 4
DH = D // H
K = 4  # conv width
LN_EPS = 1e-12
EPS = 1e-6  # the released denominator constant
SEED = 20250604
# attention kind ids in linrec's registry at replay time (core/attention.c's
# built-ins, then rela_released registered by tests/test_torch_ref.c)
KINDS = {'rela': 6, 'rela_causal': 7, 'rela_released': 10}
INITS = {'': 0.02, '_wide': 0.2}
LENS = [10, 6, 3, 1]
ARCH = 'recgrela'

PARAM_SHAPES = [
    ('ln0_w', (D,)), ('ln0_b', (D,)),
    ('ln1_w', (L, D)), ('ln1_b', (L, D)),
    ('g_w', (L, D, D)), ('g_b', (L, D)),
    ('in_w', (L, D, D)), ('in_b', (L, D)),
    ('qk_w', (L, 2 * D, D)), ('qk_b', (L, 2 * D)),
    ('conv_w', (L, D, K)), ('conv_b', (L, D)),
    ('out_w', (L, D, D)), ('out_b', (L, D)),
    ('ln2_w', (L, D)), ('ln2_b', (L, D)),
    ('fc1_w', (L, FF, D)), ('fc1_b', (L, FF)),
    ('fc2_w', (L, D, FF)), ('fc2_b', (L, D)),
]


def make_params(gen, std):
    P = {}
    for name, shape in PARAM_SHAPES:
        if name.startswith('ln') and name.endswith('_w'):
            t = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif name.startswith('ln'):
            t = 0.05 * torch.randn(shape, generator=gen)
        elif name.startswith('conv'):  # nn.Conv1d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            t = (torch.rand(shape, generator=gen) * 2 - 1) / math.sqrt(K)
        else:
            t = std * torch.randn(shape, generator=gen)
        P[name] = t.float()
    table = (std * torch.randn((I + 1, D), generator=gen)).float()
    table[0] = 0
    return P, table


def make_batch(gen):
    return make_ref.make_batch(gen, sys.modules[__name__])


def rope(x):
    """The released RoPE over the last dim D: pairs (2p, 2p+1) times e^(i t theta_p),
    theta_p = 10000^(-p/(D/2)), t the row index (angles exact, see above)."""
    k_max = D // 2
    theta = 1.0 / (10000.0 ** (torch.arange(k_max, dtype=torch.float64) / k_max))
    ang = torch.outer(torch.arange(N, dtype=torch.float64), theta)  # (N, D/2)
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(torch.polar(torch.ones_like(ang), ang) * xc).flatten(-2)


def attention(v, qk_w, qk_b, conv_w, conv_b, valid, kind):
    """RotaryEnhancedLinearAttention.forward on v = in_proj(X~) (B,N,D)."""
    qk = (v @ qk_w.T + qk_b).reshape(B, N, 2, D).permute(2, 0, 1, 3)
    q, k = F.elu(qk[0]) + 1.0, F.elu(qk[1]) + 1.0
    heads = lambda t: t.reshape(B, N, H, DH).permute(0, 2, 1, 3)  # (B,H,N,DH)
    qr, kr, q, k, vh = heads(rope(q)), heads(rope(k)), heads(q), heads(k), heads(v)
    if kind == 'rela_released':  # every row, means over L = N (the released lines)
        z = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + EPS)
        kv = (kr.transpose(-2, -1) * (N ** -0.5)) @ (vh * (N ** -0.5))
        x = qr @ kv * z
    elif kind == 'rela':  # means over the n real rows
        m = valid[:, None, :, None].to(v.dtype)
        n = m.sum(dim=-2, keepdim=True)  # (B,1,1,1)
        z = 1 / (q @ ((k * m).sum(dim=-2, keepdim=True) / n).transpose(-2, -1) + EPS)
        kv = (kr * m).transpose(-2, -1) @ vh / n
        x = qr @ kv * z
    else:  # rela_causal: prefix means over rows 0..t
        cnt = torch.arange(1, N + 1, dtype=v.dtype)[None, None, :, None]
        kmean = k.cumsum(dim=-2) / cnt
        z = 1 / ((q * kmean).sum(-1, keepdim=True) + EPS)
        kv = torch.einsum('bhtd,bhte->bhtde', kr, vh).cumsum(dim=2) / cnt[..., None]
        x = torch.einsum('bhtd,bhtde->bhte', qr, kv) * z
    x = x.transpose(1, 2).reshape(B, N, D)
    # local shortcut: causal_conv1d_fn(v^T, weight, bias, activation="silu")
    c = F.conv1d(v.permute(0, 2, 1), conv_w[:, None, :], conv_b, padding=K - 1, groups=D)
    return x + F.silu(c[..., :N]).permute(0, 2, 1)


def forward(P, table, ids, lens, kind):
    valid = torch.arange(N)[None, :] < lens[:, None]
    ln = lambda x, w, b: F.layer_norm(x, (D,), w, b, LN_EPS)
    x = ln(F.embedding(ids, table, padding_idx=0), P['ln0_w'], P['ln0_b'])
    for l in range(L):
        shortcut = x
        x = ln(x, P['ln1_w'][l], P['ln1_b'][l])
        act_res = F.silu(x @ P['g_w'][l].T + P['g_b'][l])
        v = x @ P['in_w'][l].T + P['in_b'][l]
        x = attention(v, P['qk_w'][l], P['qk_b'][l], P['conv_w'][l], P['conv_b'][l], valid, kind)
        x = shortcut + (x * act_res) @ P['out_w'][l].T + P['out_b'][l]
        f = ln(x, P['ln2_w'][l], P['ln2_b'][l]) @ P['fc1_w'][l].T + P['fc1_b'][l]
        x = x + F.gelu(f) @ P['fc2_w'][l].T + P['fc2_b'][l]
    return x


def loss_fn(h, table, lens, tgt):
    h_last = h[torch.arange(B), lens - 1]
    return F.cross_entropy(h_last @ table[1:].T, tgt - 1)


def main():
    make_ref.main(sys.modules[__name__], 'recgrela')


if __name__ == '__main__':
    main()
