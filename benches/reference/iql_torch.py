"""PyTorch reference for benches/iql.rs: one IQL critic update at batch 256, Hopper dims (obs 11,
act 3), as CORL's iql.py does it without the actor: V expectile step (τ = 0.7) onto the target
twin's min, twin-Q TD step onto r + γ(1 − d)V(s') (V from before its step), Polyak target update
(0.005); twin Q and V are 2 x 256 ReLU MLPs, Adam 3e-4.

    python benches/reference/iql_torch.py [--threads 2] [--steps 300]

Prints the median seconds per update and a machine-readable `@ref iql_step SECONDS` line.
"""

import argparse
import copy

import torch
import torch.nn as nn

from shared import median_seconds, parse

OBS, ACT, BATCH = 11, 3, 256


def mlp(d_in):
    return nn.Sequential(nn.Linear(d_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))


class TwinQ(nn.Module):
    def __init__(self):
        super().__init__()
        self.q1, self.q2 = mlp(OBS + ACT), mlp(OBS + ACT)

    def both(self, s, a):
        sa = torch.cat([s, a], 1)
        return self.q1(sa).squeeze(-1), self.q2(sa).squeeze(-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    args = parse(p)
    q, v = TwinQ(), mlp(OBS)
    q_target = copy.deepcopy(q).requires_grad_(False)
    q_opt = torch.optim.Adam(q.parameters(), lr=3e-4)
    v_opt = torch.optim.Adam(v.parameters(), lr=3e-4)
    s, a = torch.rand(BATCH, OBS) * 2 - 1, torch.rand(BATCH, ACT) * 2 - 1
    r, s2 = torch.rand(BATCH) * 2 - 1, torch.rand(BATCH, OBS) * 2 - 1
    d = (torch.rand(BATCH) < 0.01).float()

    def step():
        with torch.no_grad():
            target_q = torch.min(*q_target.both(s, a))
            next_v = v(s2).squeeze(-1)
        adv = target_q - v(s).squeeze(-1)
        v_loss = (torch.abs(0.7 - (adv < 0).float()) * adv**2).mean()
        v_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        v_opt.step()
        targets = r + (1.0 - d) * 0.99 * next_v
        q1, q2 = q.both(s, a)
        q_loss = ((q1 - targets) ** 2).mean() / 2 + ((q2 - targets) ** 2).mean() / 2
        q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        q_opt.step()
        with torch.no_grad():
            for tp, sp in zip(q_target.parameters(), q.parameters()):
                tp.mul_(1 - 0.005).add_(sp, alpha=0.005)

    median = median_seconds(step, args.steps, warmup=20)
    print(f"torch {torch.__version__}, {args.threads} threads: IQL critic step (batch 256) {1e3 * median:.2f} ms")
    print(f"@ref iql_step {median:.6e}")


if __name__ == "__main__":
    main()
