"""offrl from Python: offline RL with diffusion priors, IQL critics and RTB fine-tuning.

    import offrl
    data = offrl.Dataset.from_parquet("hopper-medium.parquet")   # or from_numpy(...)
    iql = offrl.Algorithm("iql", sets=["train.steps=100000"], seed=0)
    iql.fit(data, logdir="runs/iql")                                # resumes if run again
    lines = offrl.Algorithm("bc").fit(data)                         # in memory: the logged lines
    actions = iql.predict(observations)                             # [n, act_dim] float32
    draws, q = iql.sample(observations), iql.predict_value(observations, actions)
    iql.save("iql.ckpt"); same = offrl.load("iql.ckpt")
    rtb, lines = offrl.pipeline(data, profile="cpu", seed=0, logdir="runs/method")  # prior, critic, RTB
    grid = offrl.bench(["iql", "rtb"], suite="pendulum", seeds=[0, 1], out="runs/grid")  # a table

Datasets, configs, run directories and checkpoints are the CLI's: a model trained with
`offrl train` opens with `offrl.load(run_dir)`, and one trained here with `offrl eval`.
"""

from ._offrl import Algorithm, Dataset, __version__, algorithms, bench, collect, load, pipeline

__all__ = ["Algorithm", "Dataset", "algorithms", "bench", "collect", "load", "pipeline", "__version__"]
