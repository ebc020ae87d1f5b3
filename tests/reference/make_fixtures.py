"""Writes the PyTorch reference fixtures for tests/unit/test_model.c (see README.md here).

    /usr/bin/python3 tests/reference/make_fixtures.py          # from the repository root

For each config below: random non-zero parameters (not the zero-init of mdiff_model_init, so every
gradient is non-trivial), an input x, timesteps t_net, the output of the twin (unet.py) and the
gradient of L = sum(out * w) for a stored random w (so the C test's dout = w) with respect to every
parameter. Values are drawn, rounded to float32, then the twin runs in float64 on those rounded
values, so the only difference left for the C test is its own float32 arithmetic. Stored float32.

File layout: root attributes = the mdiff_model_cfg fields (mult / attn_res as int arrays with
counts n_levels / n_attn; attn_res holds one dummy 0 when n_attn = 0) and `batch`; datasets
/x, /t_net, /w, /out, /params/<name>, /grads/<name> with PyTorch shapes.
"""
import math
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.normpath(os.path.join(HERE, "..", "fixtures"))

CONFIGS = {
    # attention at a level (12x12, 2 heads of odd dim d = 5) and in the middle (6x6, d = 10);
    # 5 groups (odd count; group sizes 2, 4, 6 over 10, 20, 30 channels), RGB input. ch itself
    # must be even: it is the sinusoidal embedding's dimension.
    "model_unet_attn": dict(arch="unet", in_ch=3, height=12, width=12, ch=10, mult=[1, 2], nres=1,
                            attn_res=[12], heads=2, groups=5, dropout=0.0, mlp_width=256,
                            mlp_depth=4, batch=2),
    # no attention, three levels, non-square image, two res blocks per level, 4 groups.
    "model_unet_plain": dict(arch="unet", in_ch=1, height=8, width=12, ch=8, mult=[1, 2, 2],
                             nres=2, attn_res=[], heads=1, groups=4, dropout=0.0, mlp_width=256,
                             mlp_depth=4, batch=3),
    "model_mlp": dict(arch="mlp", in_ch=2, height=1, width=1, ch=32, mult=[1], nres=1,
                      attn_res=[], heads=1, groups=1, dropout=0.0, mlp_width=32, mlp_depth=3,
                      batch=3),
}


def f32(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float32)).double()


def random_params(model, gen):
    """Non-zero parameters at a scale that keeps activations O(1) through the whole net."""
    sd = {}
    for name, p in model.state_dict().items():
        u = torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1
        if ".norm" in name or name.startswith("out_norm"):
            v = 1.0 + 0.3 * u if name.endswith("weight") else 0.3 * u
        else:
            mod_w = model.state_dict()[name[: -len("bias")] + "weight"] if name.endswith("bias") \
                else p
            fan_in = mod_w[0].numel()
            v = 1.5 * u / math.sqrt(fan_in)
        sd[name] = f32(v.numpy())
    return sd


def make(name, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    model = unet.build(cfg).double()
    model.load_state_dict(random_params(model, gen))
    model.train()  # dropout is 0 in every fixture; train mode for the C's train=1 path
    b = cfg["batch"]
    shape = (b, cfg["in_ch"]) if cfg["arch"] == "mlp" else (b, cfg["in_ch"], cfg["height"],
                                                            cfg["width"])
    x = f32(torch.randn(shape, generator=gen, dtype=torch.float64).numpy())
    # timesteps over the whole range [0, 1000), including the ends
    t_net = torch.tensor([999.0, 0.0, 417.0][:b], dtype=torch.float64)
    w = f32(torch.randn(shape, generator=gen, dtype=torch.float64).numpy())
    out = model(x, t_net)
    loss = (out * w).sum()
    model.zero_grad()
    loss.backward()
    path = os.path.join(OUT_DIR, name + ".h5")
    with h5py.File(path, "w") as f:
        for k in ("arch",):
            f.attrs[k] = np.bytes_(cfg[k])
        for k in ("in_ch", "height", "width", "ch", "nres", "heads", "groups", "mlp_width",
                  "mlp_depth", "batch"):
            f.attrs[k] = np.int32(cfg[k])
        f.attrs["dropout"] = np.float32(cfg["dropout"])
        f.attrs["n_levels"] = np.int32(len(cfg["mult"]))
        f.attrs["mult"] = np.asarray(cfg["mult"], dtype=np.int32)
        f.attrs["n_attn"] = np.int32(len(cfg["attn_res"]))
        f.attrs["attn_res"] = np.asarray(cfg["attn_res"] or [0], dtype=np.int32)
        for k, v in (("x", x), ("t_net", t_net), ("w", w), ("out", out)):
            f.create_dataset(k, data=v.detach().numpy().astype(np.float32))
        gp, gg = f.create_group("params"), f.create_group("grads")
        for pname, p in model.named_parameters():
            gp.create_dataset(pname, data=p.detach().numpy().astype(np.float32))
            gg.create_dataset(pname, data=p.grad.numpy().astype(np.float32))
    n = sum(p.numel() for p in model.parameters())
    print(f"{path}: {n} parameters, out max |.| {out.abs().max().item():.3g}, "
          f"{os.path.getsize(path) / 1024:.0f} KiB")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        make(name, cfg, seed=1234 + i)
    print("default 28x28 U-Net:", sum(p.numel() for p in unet.build(unet.DEFAULT_28).parameters()),
          "parameters")


if __name__ == "__main__":
    main()
