"""PyTorch twin of mdiff's denoisers (include/mdiff/model.h): the U-Net and the MLP.

Mirrors the C model op for op: the same module names (state_dict keys = the C parameter names, so a
checkpoint's /params/<name> loads with load_state_dict), the same op order, GroupNorm eps 1e-5, the
same attention layout (qkv = 1x1 conv to 3C; q = channels [0, C), k = [C, 2C), v = [2C, 3C); head h
uses channels [h d, (h+1) d) of each; softmax(q^T k / sqrt(d)) over key positions; 1x1 proj;
residual). Config keys are the fields of mdiff_model_cfg (include/mdiff/config.h).

Only the initialisation differs: the twin keeps PyTorch's default init (all non-zero), the C model
zero-inits the last conv of each block; fixtures overwrite every parameter anyway.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GN_EPS = 1e-5
MLP_TEMB_DIM = 128


def timestep_embedding(t, dim, dtype=torch.float64):
    """[cos(t f_i), sin(t f_i)], f_i = exp(-ln(10000) i / (dim/2)), as mdiff_timestep_embedding.

    The C op works in float32: f_i = expf(fl(fl(-ln 1e4 * i) / half)) and arg = fl(t * f_i). At
    t ~ 1000 one float32 rounding of the argument moves cos/sin by ~3e-5, far above the tolerance
    of the fixture test, so the twin reproduces the float32 argument exactly (IEEE float32 products
    in numpy, exp correctly rounded via float64) and only evaluates cos/sin in `dtype`."""
    half = dim // 2
    nl = np.float32(-math.log(10000.0))
    f = np.empty(half, dtype=np.float32)
    for i in range(half):
        e = np.float32(np.float32(nl * np.float32(i)) / np.float32(half))
        f[i] = np.float32(math.exp(float(e)))
    tt = t.detach().cpu().numpy().astype(np.float32)
    arg = (tt[:, None] * f[None, :]).astype(np.float32)
    arg = torch.from_numpy(arg).to(dtype)
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=GN_EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_proj = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=GN_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb_act):
        """temb_act = SiLU(temb), shared by every block (computed once, as in C)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(temb_act)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) if self.skip is not None else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c, eps=GN_EPS)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        nh, L = self.heads, hh * ww
        d = c // nh
        qkv = self.qkv(self.norm(x)).reshape(b, 3, nh, d, L)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (B, NH, d, L)
        att = torch.softmax(torch.einsum("bhdi,bhdj->bhij", q, k) / math.sqrt(d), dim=-1)
        o = torch.einsum("bhij,bhdj->bhdi", att, v).reshape(b, c, hh, ww)
        return x + self.proj(o)


class DownLevel(nn.Module):
    pass


class UpStage(nn.Module):
    pass


class Mid(nn.Module):
    pass


class UNet(nn.Module):
    """DDPM-style U-Net (issue 3). Up stage i handles level L-1-i (deepest first)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        ch, mult, nres = cfg["ch"], list(cfg["mult"]), cfg["nres"]
        groups, heads, drop = cfg["groups"], cfg["heads"], cfg.get("dropout", 0.0)
        attn_res = set(cfg["attn_res"])
        nl = len(mult)
        tdim = 4 * ch
        self.time_embed = nn.Sequential(nn.Linear(ch, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.input_conv = nn.Conv2d(cfg["in_ch"], ch, 3, padding=1)
        skips = [ch]
        c = ch
        self.level_attn = []
        self.down = nn.ModuleList()
        for l in range(nl):
            side = cfg["height"] >> l
            use_attn = side in attn_res
            self.level_attn.append(use_attn)
            lv = DownLevel()
            lv.res = nn.ModuleList()
            lv.attn = nn.ModuleList()
            for _ in range(nres):
                cout = ch * mult[l]
                lv.res.append(ResBlock(c, cout, tdim, groups, drop))
                c = cout
                if use_attn:
                    lv.attn.append(AttnBlock(c, heads, groups))
                skips.append(c)
            if l < nl - 1:
                lv.downsample = nn.Conv2d(c, c, 3, stride=2, padding=1)
                skips.append(c)
            self.down.append(lv)
        self.mid = Mid()
        self.mid.res1 = ResBlock(c, c, tdim, groups, drop)
        self.mid_attn = len(attn_res) > 0
        if self.mid_attn:
            self.mid.attn = AttnBlock(c, heads, groups)
        self.mid.res2 = ResBlock(c, c, tdim, groups, drop)
        self.up = nn.ModuleList()
        for i in range(nl):
            l = nl - 1 - i
            st = UpStage()
            st.res = nn.ModuleList()
            st.attn = nn.ModuleList()
            for _ in range(nres + 1):
                cout = ch * mult[l]
                st.res.append(ResBlock(c + skips.pop(), cout, tdim, groups, drop))
                c = cout
                if self.level_attn[l]:
                    st.attn.append(AttnBlock(c, heads, groups))
            if l > 0:
                st.upsample = nn.Conv2d(c, c, 3, padding=1)
            self.up.append(st)
        assert not skips
        self.out_norm = nn.GroupNorm(groups, c, eps=GN_EPS)
        self.out_conv = nn.Conv2d(c, cfg["in_ch"], 3, padding=1)

    def forward(self, x, t_net):
        nl, nres = len(self.cfg["mult"]), self.cfg["nres"]
        temb = self.time_embed(timestep_embedding(t_net, self.cfg["ch"], x.dtype))
        ta = F.silu(temb)
        h = self.input_conv(x)
        hs = [h]
        for l, lv in enumerate(self.down):
            for j in range(nres):
                h = lv.res[j](h, ta)
                if self.level_attn[l]:
                    h = lv.attn[j](h)
                hs.append(h)
            if l < nl - 1:
                h = lv.downsample(h)
                hs.append(h)
        h = self.mid.res1(h, ta)
        if self.mid_attn:
            h = self.mid.attn(h)
        h = self.mid.res2(h, ta)
        for i, st in enumerate(self.up):
            l = nl - 1 - i
            for j in range(nres + 1):
                h = st.res[j](torch.cat([h, hs.pop()], dim=1), ta)
                if self.level_attn[l]:
                    h = st.attn[j](h)
            if l > 0:
                h = st.upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))


class MLP(nn.Module):
    """Denoiser for vector data: D = in_ch, W = mlp_width, mlp_depth residual SiLU layers."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, w = cfg["in_ch"], cfg["mlp_width"]
        self.time_embed = nn.Sequential(nn.Linear(MLP_TEMB_DIM, w), nn.SiLU(), nn.Linear(w, w))
        self.input_proj = nn.Linear(d, w)
        self.layers = nn.ModuleList([nn.Linear(w, w) for _ in range(cfg["mlp_depth"])])
        self.out = nn.Linear(w, d)

    def forward(self, x, t_net):
        temb = self.time_embed(timestep_embedding(t_net, MLP_TEMB_DIM, x.dtype))
        h = self.input_proj(x) + temb
        for lin in self.layers:
            h = h + lin(F.silu(h))
        return self.out(F.silu(h))


def build(cfg):
    return UNet(cfg) if cfg["arch"] == "unet" else MLP(cfg)


DEFAULT_28 = dict(arch="unet", in_ch=1, height=28, width=28, ch=32, mult=[1, 2, 2], nres=2,
                  attn_res=[7], heads=1, groups=8, dropout=0.0, mlp_width=256, mlp_depth=4)

if __name__ == "__main__":
    m = build(DEFAULT_28)
    print("default 28x28 U-Net parameters:", sum(p.numel() for p in m.parameters()))
