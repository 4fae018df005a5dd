"""What the PyTorch reference scripts share: offrl's prior ε-network (the RTB paper's shape: an MLP on
[s, x_t, 2 x 64 Fourier features of τ], 3 x (Linear 256 -> LayerNorm -> GELU), linear output), timing by
median, and the command line's thread count. Imported by the scripts beside it (their folder is on
`sys.path` when they run)."""

import math
import time

import torch
import torch.nn as nn

WIDTH, HARMONICS = 256, 64


class EpsNet(nn.Module):
    def __init__(self, obs, act):
        super().__init__()
        layers, d = [], obs + act + 2 * HARMONICS
        for _ in range(3):
            layers += [nn.Linear(d, WIDTH), nn.LayerNorm(WIDTH), nn.GELU()]
            d = WIDTH
        layers.append(nn.Linear(d, act))
        self.net = nn.Sequential(*layers)
        self.register_buffer("harmonics", torch.arange(1, HARMONICS + 1).float() * 2 * math.pi)

    def forward(self, s, x, tau):
        angle = tau.unsqueeze(1) * self.harmonics
        return self.net(torch.cat([s, x, angle.sin(), angle.cos()], 1))


def sorted_seconds(fn, repeats, warmup=0):
    """Wall seconds of `repeats` calls of `fn` after `warmup` untimed ones, fastest first."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)


def median_seconds(fn, repeats, warmup=0):
    times = sorted_seconds(fn, repeats, warmup)
    return times[len(times) // 2]


def parse(parser):
    """`parser`'s arguments and `--threads` (default 2); PyTorch then runs on that many threads, seed 0."""
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args
