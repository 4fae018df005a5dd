"""PyTorch reference for benches/prior.rs: the same diffusion prior (RTB paper shapes) on the CPU
with 2 threads. Hopper dims (obs 11, act 3); MLP on [s, x_t, 128 Fourier features], 3 x
(Linear 256 -> LayerNorm -> GELU), linear output; T = 75, linear betas 1e-4..0.02, Min-SNR-5 loss,
Adam 5e-4, batch 512.

    python benches/reference/prior_torch.py [--threads 2] [--steps 200]

Prints training steps/s and sampling latency (10 states x 75 steps; 4096 states x 75 steps), and
machine-readable `@ref KEY SECONDS` lines (medians) for scripts/perf-compare.sh.
"""

import argparse

import torch

from shared import EpsNet, median_seconds, parse

OBS, ACT, T = 11, 3, 75


def schedule():
    beta = torch.cat([torch.zeros(1), torch.linspace(1e-4, 0.02, T)])
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, 0)
    return beta, alpha, alpha_bar


def train_step_seconds(model, steps):
    beta, alpha, alpha_bar = schedule()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    s = torch.rand(512, OBS) * 2 - 1
    a = torch.rand(512, ACT) * 2 - 1

    def step():
        t = torch.randint(1, T + 1, (512,))
        eps = torch.randn(512, ACT)
        ab = alpha_bar[t].unsqueeze(1)
        x_t = ab.sqrt() * a + (1 - ab).sqrt() * eps
        w = torch.clamp(5.0 / (ab / (1 - ab)), max=1.0)
        loss = (w * (model(s, x_t, (T - t).float() / T) - eps) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(10):
        step()
    return median_seconds(step, steps)


@torch.no_grad()
def sample_latency(model, n, repeats):
    beta, alpha, alpha_bar = schedule()
    s = torch.rand(n, OBS) * 2 - 1

    def sample():
        x = torch.randn(n, ACT)
        for t in range(T, 0, -1):
            tau = torch.full((n,), (T - t) / T)
            eps = model(s, x, tau)
            mean = (x - beta[t] / (1 - alpha_bar[t]).sqrt() * eps) / alpha[t].sqrt()
            x = mean + beta[t].sqrt() * torch.randn_like(x)
        return x

    sample()
    return median_seconds(sample, repeats)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    args = parse(parser)
    model = EpsNet(OBS, ACT)
    print(f"torch {torch.__version__}, {args.threads} threads")
    step = train_step_seconds(model, args.steps)
    print(f"train step (batch 512): {1e3 * step:.2f} ms")
    model.eval()
    s10 = sample_latency(model, 10, 20)
    print(f"sample 10 states x T=75: {1e3 * s10:.2f} ms")
    s4096 = sample_latency(model, 4096, 5)
    print(f"sample 4096 states x T=75: {1e3 * s4096:.1f} ms")
    print(f"@ref prior_step {step:.6e}")
    print(f"@ref sample_10 {s10:.6e}")
    print(f"@ref sample_4096 {s4096:.6e}")


if __name__ == "__main__":
    main()
