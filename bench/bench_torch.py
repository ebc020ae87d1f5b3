"""bench_torch: the PyTorch side of `make bench` — the twin of mdiff's default U-Net
(tests/reference/unet.py) trained and evaluated the way bench_model times mdiff.

  /usr/bin/python3 bench/bench_torch.py --threads N [--batch 64] [--reps 5] [--warmup 2]
      [--mode train|infer] [--params P]

train: one step = forward, MSE loss, backward, AdamW step (mdiff's step has the same parts).
infer: one denoiser evaluation under torch.no_grad() (what a sampler step costs).
--params P asserts the twin has exactly P parameters (mdiff's count), so both sides run the
same architecture. Prints one machine-readable line:
  torch MODE threads N batch B params P median_s S img_s I peak_rss_mb R
(peak_rss_mb = ru_maxrss of this process, which holds only the model, its optimizer state and
one batch, like an mdiff rank).
"""
import argparse
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import unet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--params", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = unet.build(unet.DEFAULT_28)
    n = sum(p.numel() for p in model.parameters())
    if a.params and n != a.params:
        sys.exit(f"bench_torch: twin has {n} parameters, mdiff has {a.params}: not the same model")
    B = a.batch
    x = torch.randn(B, 1, 28, 28)
    target = torch.randn(B, 1, 28, 28)
    t = torch.tensor([float((b * 37) % 1000) for b in range(B)])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x, t), target)
        loss.backward()
        opt.step()

    def infer_step():
        with torch.no_grad():
            model(x, t)

    step = train_step if a.mode == "train" else infer_step
    if a.mode == "infer":
        model.eval()
    times = []
    for r in range(a.warmup + a.reps):
        t0 = time.perf_counter()
        step()
        dt = time.perf_counter() - t0
        if r >= a.warmup:
            times.append(dt)
    times.sort()
    med = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"torch {a.mode} threads {a.threads} batch {B} params {n} median_s {med:.4f} "
          f"img_s {B / med:.2f} peak_rss_mb {rss:.0f}")


if __name__ == "__main__":
    main()
