"""offrl from Python as a d3rlpy user reads it: data, fit, evaluate, act in a gymnasium loop, save and load.
`pip install ./bindings/python`, then `python examples/quickstart.py [UPDATES]` (default 20,000)."""
import sys

import gymnasium as gym
import offrl

updates = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
data = offrl.collect("Pendulum-v1", "pendulum-swingup", steps=20_000, noise=0.5, seed=0)
iql = offrl.Algorithm("iql", sets=[f"train.steps={updates}"], seed=0)
iql.fit(data, logdir="runs/quickstart-iql")  # metrics.jsonl, plots, checkpoints; run again: resumes
print(iql.evaluate(gym.make("Pendulum-v1"), episodes=10, seed=0))
env = gym.make("Pendulum-v1")
obs, _ = env.reset(seed=0)
for _ in range(200):  # the trained policy is a callable: observation in, action out
    obs, reward, terminated, truncated, _ = env.step(iql(obs))
iql.save("runs/quickstart-iql.ckpt")  # `offrl eval --checkpoint runs/quickstart-iql.ckpt` opens it too
same = offrl.load("runs/quickstart-iql.ckpt")
print("same actions after loading:", (same.predict(obs) == iql.predict(obs)).all())
