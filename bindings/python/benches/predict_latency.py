"""Per-call time of offrl.Algorithm.predict for one observation and a batch of 256 (BC,
Pendulum); compare with `cargo run --example train_and_predict` (benches/RESULTS.md)."""
import time, numpy as np, offrl, tempfile, os
data = offrl.collect("Pendulum-v1", "pendulum-swingup", steps=2000, noise=0.5, seed=0)
d = tempfile.mkdtemp()
bc = offrl.Algorithm("bc", sets=["train.steps=10"], seed=0)
bc.fit(data, logdir=os.path.join(d, "bc"))
obs = data.to_numpy()["observations"]
one, batch = obs[0].copy(), np.ascontiguousarray(obs[:256])
for x in (one, batch):
    bc.predict(x)
def t(x, n):
    s = time.perf_counter()
    for _ in range(n): bc.predict(x)
    return (time.perf_counter() - s) / n * 1e6
for name, x, n in (("one", one, 20000), ("batch256", batch, 2000), ("batch256_f64", batch.astype(np.float64), 2000)):
    print(name, round(min(t(x, n) for _ in range(3)), 2), "us")
