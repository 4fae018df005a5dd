"""PyTorch reference for benches/eval.rs: environment steps per second of a diffusion policy (the
RTB paper's prior network: MLP on [s, x_t, 128 Fourier features], 3 x (Linear 256 -> LayerNorm ->
GELU), T = 75, pre-tanh actions, untrained) over 10 gymnasium environments stepped together, one
batched sampling call per step, each environment running one episode (as offrl's evaluate with
10 episodes on 10 environments). torch needs gymnasium next to it: run with PYTHONPATH set to
.venv's site-packages (scripts/perf-compare.sh does).

    python benches/reference/eval_torch.py [--threads 2] [--envs Pendulum-v1,Hopper-v5]

Prints steps/s per environment and `@ref eval_<ENV> SECONDS_PER_ENV_STEP` lines.
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from shared import EpsNet, parse

T, N_ENVS = 75, 10


@torch.no_grad()
def sample(model, s, act_dim, beta, alpha, alpha_bar):
    n = s.shape[0]
    x = torch.randn(n, act_dim)
    for t in range(T, 0, -1):
        eps = model(s, x, torch.full((n,), (T - t) / T))
        x = (x - beta[t] / (1 - alpha_bar[t]).sqrt() * eps) / alpha[t].sqrt() + beta[t].sqrt() * torch.randn_like(x)
    return x


def steps_per_s(env_id):
    envs = [gym.make(env_id) for _ in range(N_ENVS)]
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    high = float(envs[0].action_space.high[0])
    model = EpsNet(obs_dim, act_dim).eval()
    beta = torch.cat([torch.zeros(1), torch.linspace(1e-4, 0.02, T)])
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, 0)
    obs = [env.reset(seed=i)[0] for i, env in enumerate(envs)]
    active = list(range(N_ENVS))
    steps = 0
    start = time.perf_counter()
    while active:
        s = torch.as_tensor(np.stack([obs[i] for i in active]), dtype=torch.float32)
        actions = (torch.tanh(sample(model, s, act_dim, beta, alpha, alpha_bar)) * high).numpy()
        still = []
        for row, i in enumerate(active):
            obs[i], _, terminated, truncated, _ = envs[i].step(actions[row])
            steps += 1
            if not (terminated or truncated):
                still.append(i)
        active = still
    return steps, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--envs", default="Pendulum-v1,Hopper-v5")
    p.add_argument("--repeats", type=int, default=3)
    args = parse(p)
    for env_id in args.envs.split(","):
        runs = sorted((t / n, n) for n, t in (steps_per_s(env_id) for _ in range(args.repeats)))
        per_step, n = runs[len(runs) // 2]
        print(f"torch {env_id}: {n} env steps per evaluation, {1 / per_step:.0f} env steps/s")
        print(f"@ref eval_{env_id} {per_step:.6e}")


if __name__ == "__main__":
    main()
