"""recgrela_peer.py: PyTorch CPU peer of linrec's recgrela architecture for the
throughput comparison (issue 16): a port of the released RecGRELA
(github TBI805/RecGRELA, model/RecGRELA.py) with its ML-1M settings; measures
training throughput the way the PyTorch peer of tests/bench_peer.sh does
(same command line, same JSON line), so the two can be run A B A B.

Run with Debian's python3-torch (1.13):
  /usr/bin/python3 tests/recgrela_peer.py --attention rela --positions last --batch 256 --threads 2
Prints one JSON line: config, sequences/s (median of timed steps), peak RSS MiB.

The port follows the released forward (pre-LN GRELA blocks, Q and K projected
from V, elu+1 maps, RoPE over the full width, the mean-normalised linear
attention, the SiLU local shortcut of causal_conv1d_fn, the SiLU gate, DropPath,
Mlp) with these deviations: the local shortcut is F.conv1d + SiLU on the CPU
(causal_conv1d_fn is CUDA only, and the released CPU fallback adds a (B,D,L)
tensor to a (B,L,D) one); DropPath is timm's formula inline (no timm); every
sequence is full length (as torch_peer.py: no padding); `rela_causal` is the
causal form written the way a PyTorch user would (a masked (N,N) score matrix
for the numerator, cumulative sums for the denominator).
"""
import argparse, json, math, resource, time
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument('--attention', default='rela', choices=['rela', 'rela_causal'])
p.add_argument('--positions', default='last', choices=['last', 'all'])
p.add_argument('--items', type=int, default=3416)
p.add_argument('--d', type=int, default=64)
p.add_argument('--heads', type=int, default=4)
p.add_argument('--layers', type=int, default=4)
p.add_argument('--inner', type=int, default=256)
p.add_argument('--N', type=int, default=200)
p.add_argument('--batch', type=int, default=256)
p.add_argument('--threads', type=int, default=2)
p.add_argument('--steps', type=int, default=8)
p.add_argument('--warmup', type=int, default=2)
p.add_argument('--dropout', type=float, default=0.1)
p.add_argument('--drop_path', type=float, default=0.1)
p.add_argument('--bf16', action='store_true', help='autocast the forward and loss to bfloat16 (oneDNN kernels), fp32 master weights')
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


class DropPath(nn.Module):  # timm's, scale_by_keep=True
    def __init__(s, p):
        super().__init__()
        s.p = p

    def forward(s, x):
        if s.p == 0.0 or not s.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - s.p)
        return x * keep / (1 - s.p)


class RoPE(nn.Module):  # the released module
    def __init__(s, seq_len, d, base=10000):
        super().__init__()
        k_max = d // 2
        theta = 1 / (base ** (torch.arange(k_max) / k_max))
        ang = torch.outer(torch.arange(seq_len), theta)
        s.register_buffer('rot', torch.cat([torch.cos(ang)[..., None], torch.sin(ang)[..., None]], -1))

    def forward(s, x):
        x = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(torch.view_as_complex(s.rot) * x).flatten(-2)


class RELA(nn.Module):  # RotaryEnhancedLinearAttention
    def __init__(s, d, N, h, causal):
        super().__init__()
        s.h, s.causal = h, causal
        s.qk = nn.Linear(d, 2 * d)
        s.conv1d = nn.Conv1d(d, d, kernel_size=4, padding=3, groups=d, bias=True)
        s.rope = RoPE(N, d)

    def forward(s, x):
        B, L, D = x.shape
        H, dh = s.h, D // s.h
        qk = s.qk(x).reshape(B, L, 2, D).permute(2, 0, 1, 3)
        q, k = F.elu(qk[0]) + 1.0, F.elu(qk[1]) + 1.0
        hd = lambda t: t.reshape(B, L, H, dh).permute(0, 2, 1, 3)
        qr, kr, q, k, v = hd(s.rope(q)), hd(s.rope(k)), hd(q), hd(k), hd(x)
        if not s.causal:
            z = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + 1e-6)
            kv = (kr.transpose(-2, -1) * (L ** -0.5)) @ (v * (L ** -0.5))
            out = qr @ kv * z
        else:
            cnt = torch.arange(1, L + 1, dtype=x.dtype, device=x.device)[:, None]
            z = 1 / ((q * (k.cumsum(dim=-2) / cnt)).sum(-1, keepdim=True) + 1e-6)
            out = ((qr @ kr.transpose(-2, -1)).tril() @ v) / cnt * z
        out = out.transpose(1, 2).reshape(B, L, D)
        c = F.silu(s.conv1d(x.transpose(1, 2))[..., :L]).transpose(1, 2)
        return out + c


class GRELA(nn.Module):
    def __init__(s, d, N, h, inner, causal):
        super().__init__()
        s.attn = RELA(d, N, h, causal)
        s.in_proj, s.out_proj, s.act_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        s.ln1, s.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        s.fc1, s.fc2 = nn.Linear(d, inner), nn.Linear(inner, d)
        s.drop = nn.Dropout(a.dropout)
        s.drop_path = DropPath(a.drop_path)

    def forward(s, x):
        y = s.ln1(x)
        g = F.silu(s.act_proj(y))
        y = s.attn(s.in_proj(y))
        x = x + s.drop_path(s.out_proj(y * g))
        return x + s.drop(s.fc2(s.drop(F.gelu(s.fc1(s.ln2(x))))))


class RecGRELA(nn.Module):
    def __init__(s):
        super().__init__()
        s.item = nn.Embedding(a.items + 1, a.d, padding_idx=0)
        s.ln = nn.LayerNorm(a.d, eps=1e-12)
        s.drop = nn.Dropout(a.dropout)
        s.blocks = nn.ModuleList(GRELA(a.d, a.N, a.heads, a.inner, a.attention == 'rela_causal')
                                 for _ in range(a.layers))
        for m in s.modules():  # the released _init_weights (the conv keeps its default)
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.data.normal_(0, 0.02)
            if isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def forward(s, seq):
        x = s.ln(s.drop(s.item(seq)))
        for blk in s.blocks:
            x = blk(x)
        return x


model = RecGRELA()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
seq = torch.randint(1, a.items + 1, (a.batch, a.N))
tgt = torch.randint(1, a.items + 1, (a.batch, a.N))


def step():
    opt.zero_grad()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=a.bf16):
        h = model(seq)
        if a.positions == 'last':
            logits = h[:, -1] @ model.item.weight.t()
            loss = F.cross_entropy(logits.float(), tgt[:, -1])
        else:
            logits = h.reshape(-1, a.d) @ model.item.weight.t()
            loss = F.cross_entropy(logits.float(), tgt.reshape(-1))
    loss.backward()
    opt.step()


for _ in range(a.warmup):
    step()
times = []
for _ in range(a.steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
times.sort()
med = times[len(times) // 2]
print(json.dumps(dict(vars(a), torch=torch.__version__, seq_per_s=round(a.batch / med, 1),
                      step_s=round(med, 4), peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))))
