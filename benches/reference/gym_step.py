"""Raw gymnasium stepping speed, the reference for the collection benchmark (benches/collect.rs).

    .venv/bin/python benches/reference/gym_step.py [ENV_ID] [STEPS]

Prints steps/s for two loops in one process: `env.step(env.action_space.sample())` (the
usual random-action loop) and stepping pre-sampled float32 actions (pure stepping cost).
"""
import sys
import time

import gymnasium as gym
import numpy as np

env_id = sys.argv[1] if len(sys.argv) > 1 else "Hopper-v5"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
env = gym.make(env_id)
env.action_space.seed(0)


def run(next_action):
    env.reset(seed=0)
    start = time.perf_counter()
    for t in range(steps):
        _, _, terminated, truncated, _ = env.step(next_action(t))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


actions = np.random.default_rng(0).uniform(
    env.action_space.low, env.action_space.high, (steps,) + env.action_space.shape
).astype(np.float32)
for _ in range(2):  # the second round is the one to read (warm caches)
    sampled = run(lambda t: env.action_space.sample())
    presampled = run(lambda t: actions[t])
print(f"{env_id}: action_space.sample() loop {sampled:,.0f} steps/s; pre-sampled actions {presampled:,.0f} steps/s")
