"""PyTorch reference for benches/rtb.rs: one on-policy and one off-policy RTB update at the
paper's shapes (Hopper dims obs 11 / act 3; 64 states x 64 trajectories x T = 75), the same
math as offrl's src/algos/rtb.rs and as the paper's code (GFNOrg/diffusion-finetuning,
offline_RL/model.py, `QFlow.compute_loss` / `compute_loss_with_sample`):

- prior ε_μ and correction NN: MLP on [s, x_t, 128 Fourier features], 3 x (Linear 256 ->
  LayerNorm -> GELU), linear output; c(t): MLP 128 -> 128 -> 128 -> act (LayerNorm + GELU);
- ε_π = ε_μ (frozen) + NN(s, x_t, t) + c(t) * clamp(∇_x log r(s, x_t), ±100), with
  log r = Q(s, tanh x)/α + Σ log(1 − tanh² x), Q = min of a twin 2 x 256 ReLU MLP;
- on-policy: sample x_T..x_0 from π keeping the graph of every step (as the paper's code does),
  log π and log μ of the sampled steps, VarGrad log Z per state (detached),
  loss = ½ mean (log Z + log π − log μ − log r)², backward, Adam 5e-4;
- off-policy: dataset actions repeated k times, noised along the forward process, same loss.

    python benches/reference/rtb_torch.py [--threads 2] [--repeats 3] [--states 64 --k 64 --T 75]

Prints seconds per update (median), peak RSS, the GEMM rate of `[rows, 256] x [256, 256]` on this
machine, and machine-readable `@ref KEY SECONDS` lines for scripts/perf-compare.sh. offrl
computes the same gradient in chunks of trajectories (bounded memory); this script keeps the
whole graph, as the paper's code.
"""

import argparse
import math
import resource

import torch
import torch.nn as nn

from shared import median_seconds, parse, sorted_seconds

OBS, ACT, WIDTH, HARMONICS = 11, 3, 256, 64


def mlp(d_in, d_out, width, hidden, norm, act):
    layers, d = [], d_in
    for _ in range(hidden):
        layers += [nn.Linear(d, width)] + ([nn.LayerNorm(width)] if norm else []) + [act()]
        d = width
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class EpsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp(OBS + ACT + 2 * HARMONICS, ACT, WIDTH, 3, True, nn.GELU)

    def forward(self, s, x, feats):
        return self.net(torch.cat([s, x, feats.expand(x.shape[0], -1)], 1))


def fourier(tau):
    angle = torch.tensor([tau]).unsqueeze(1) * torch.arange(1, HARMONICS + 1).float() * 2 * math.pi
    return torch.cat([angle.sin(), angle.cos()], 1)


class TwinQ(nn.Module):
    def __init__(self):
        super().__init__()
        self.q1 = mlp(OBS + ACT, 1, 256, 2, False, nn.ReLU)
        self.q2 = mlp(OBS + ACT, 1, 256, 2, False, nn.ReLU)

    def forward(self, s, a):
        sa = torch.cat([s, a], 1)
        return torch.min(self.q1(sa), self.q2(sa)).squeeze(1)


def log_reward(q, s, x, alpha):
    a = torch.tanh(x)
    jac = 2 * (math.log(2) - x.abs() - torch.log1p(torch.exp(-2 * x.abs())))
    return q(s, a) / alpha + jac.sum(1)


def reward_grad(q, s, x, alpha):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        g, = torch.autograd.grad(log_reward(q, s, x, alpha).sum(), x)
    return g.clamp(-100, 100)


def gaussian_log_prob(x, mean, std):
    return (-0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(1)


class Setup:
    def __init__(self, states, k, T, alpha=0.1):
        scale = 75.0 / T
        beta = torch.cat([torch.zeros(1), torch.linspace(1e-4 * scale, 0.02 * scale, T)]).double()
        alpha_t = 1 - beta
        ab = torch.cumprod(alpha_t, 0)
        self.T, self.k, self.states, self.alpha = T, k, states, alpha
        self.coef_xt = (1 / alpha_t.sqrt()).tolist()
        self.coef_eps = (beta / (alpha_t.sqrt() * (1 - ab).sqrt())).tolist()
        self.std = beta.sqrt().tolist()
        self.beta = beta.tolist()
        self.feats = [fourier((T - t) / T) if t > 0 else None for t in range(T + 1)]
        self.prior = EpsNet().requires_grad_(False)
        self.corr = EpsNet()
        nn.init.zeros_(self.corr.net[-1].weight)
        nn.init.zeros_(self.corr.net[-1].bias)
        self.c = mlp(2 * HARMONICS, ACT, 128, 2, True, nn.GELU)
        nn.init.zeros_(self.c[-1].weight)
        nn.init.zeros_(self.c[-1].bias)
        self.q = TwinQ().requires_grad_(False)
        self.opt = torch.optim.Adam(list(self.corr.parameters()) + list(self.c.parameters()), lr=5e-4)
        self.s = torch.rand(states, OBS) * 2 - 1
        self.a = torch.rand(states, ACT) * 2 - 1

    def eps(self, s, x, t):
        f = self.feats[t]
        with torch.no_grad():
            e_mu = self.prior(s, x, f)
        g = reward_grad(self.q, s, x, self.alpha)
        e_pi = e_mu + self.corr(s, x, f) + self.c(f) * g
        return e_mu, e_pi

    def loss(self, s, log_pi, log_mu, log_r):
        log_z = (log_r + log_mu - log_pi).detach().view(-1, self.k).mean(1).repeat_interleave(self.k)
        return 0.5 * ((log_z + log_pi - log_mu - log_r) ** 2).mean()

    def on_policy(self):
        s = self.s.repeat_interleave(self.k, 0)
        n = s.shape[0]
        x = torch.randn(n, ACT)
        log_pi = torch.zeros(n)
        log_mu = torch.zeros(n)
        for t in range(self.T, 0, -1):
            e_mu, e_pi = self.eps(s, x, t)
            m_pi = self.coef_xt[t] * x - self.coef_eps[t] * e_pi
            m_mu = self.coef_xt[t] * x - self.coef_eps[t] * e_mu
            nxt = (m_pi + self.std[t] * torch.randn_like(x)).detach()
            log_pi = log_pi + gaussian_log_prob(nxt, m_pi, self.std[t])
            log_mu = log_mu + gaussian_log_prob(nxt, m_mu, self.std[t])
            x = nxt
        with torch.no_grad():
            log_r = log_reward(self.q, s, x, self.alpha)
        self.step(self.loss(s, log_pi, log_mu, log_r))

    def off_policy(self):
        s = self.s.repeat_interleave(self.k, 0)
        x = self.a.repeat_interleave(self.k, 0)
        n = s.shape[0]
        with torch.no_grad():
            log_r = log_reward(self.q, s, x, self.alpha)
        log_pi = torch.zeros(n)
        log_mu = torch.zeros(n)
        for t in range(1, self.T + 1):
            x_t = math.sqrt(1 - self.beta[t]) * x + math.sqrt(self.beta[t]) * torch.randn_like(x)
            e_mu, e_pi = self.eps(s, x_t, t)
            m_pi = self.coef_xt[t] * x_t - self.coef_eps[t] * e_pi
            m_mu = self.coef_xt[t] * x_t - self.coef_eps[t] * e_mu
            log_pi = log_pi + gaussian_log_prob(x, m_pi, self.std[t])
            log_mu = log_mu + gaussian_log_prob(x, m_mu, self.std[t])
            x = x_t
        self.step(self.loss(s, log_pi, log_mu, log_r))

    def step(self, loss):
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--states", type=int, default=64)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--T", type=int, default=75)
    args = parse(p)
    setup = Setup(args.states, args.k, args.T)
    for name, fn in [("on_policy", setup.on_policy), ("off_policy", setup.off_policy)]:
        times = sorted_seconds(fn, args.repeats, warmup=1)
        median = times[len(times) // 2]
        print(f"torch {args.states}x{args.k}xT{args.T} {name}: {median:.3f} s/update "
              f"(min {times[0]:.3f}, {args.threads} threads)")
        print(f"@ref rtb_{args.states}x{args.k}xT{args.T}_{name} {median:.6e}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
    for rows in [4096, 38400]:
        a, w = torch.rand(rows, 256), torch.rand(256, 256)
        median = median_seconds(lambda: a @ w, 20)
        print(f"gemm {rows}x256x256: {2 * rows * 256 * 256 / median / 1e9:.1f} GFLOP/s")
        print(f"@ref gemm_{rows} {median:.6e}")


if __name__ == "__main__":
    main()
