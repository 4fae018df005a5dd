"""8 Gaussians (radius 2.83, std 0.354, scaled by 1/4 into a ±1.25 action box) at one state: a DDPM
trained at K steps (diffusion-BC, default 3 × 256 network), then DxMI or GCD started from it; sliced
Wasserstein distance to fresh data, the fraction of samples within 3 std of a mode, and their spread
about it in units of the data's std (the data's own: 0.98 after the 3-std cut, 99 % near a mode), and the modes
covered (holding at least a quarter of their share of the samples), for each.
`python bindings/python/benches/dxmi_eight_gaussians.py K DDPM_STEPS dxmi|gcd STEPS [KEY=VALUE ...]`
(the README's table: `K 3000 dxmi|gcd 2000 value_lr=1e-3 [sampler_lr=1e-4|1e-5]` for K = 4 and 10; both default
to sampler_lr 1e-5). DDPM_STEPS = 0 trains a fresh sampler (its network predicting the action) instead.
"""
import json, sys, tempfile, os, numpy as np, offrl

CENTERS = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1) * 2.83 / 4
STD = 0.354 / 4

def eight(n, rng):
    return (CENTERS[rng.integers(0, 8, n)] + rng.normal(0, STD, (n, 2))).astype(np.float32)

def score(algo, n=4000):
    rng = np.random.default_rng(123)
    x, ref = algo.predict(np.zeros((n, 1), np.float32)), eight(n, rng)
    d = rng.normal(size=(128, 2)); d /= np.linalg.norm(d, axis=1, keepdims=True)
    sw = float(np.sqrt(((np.sort(x @ d.T, 0) - np.sort(ref @ d.T, 0)) ** 2).mean()))
    dist = np.linalg.norm(x[:, None] - CENTERS[None], axis=2)
    close = dist.min(1) < 3 * STD
    # the spread around the nearest mode of the samples near one (the data's: STD, less the 3-std cut)
    off = x[close] - CENTERS[dist[close].argmin(1)]
    spread = float(off.std()) if close.any() else float("nan")
    # mode coverage: the modes that hold at least a quarter of their 1/8 share of the samples
    share = np.bincount(dist.argmin(1)[close], minlength=8) / len(x)
    modes = int((share >= 1 / 32).sum())
    return dict(sw=round(sw, 3), near_a_mode=round(float(close.mean()), 3), mode_std=round(spread / STD, 2),
                modes=modes)

k, ddpm_steps, algo, steps, sets = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5:]
n = 20000
a, o = eight(n, np.random.default_rng(0)), np.zeros((n, 1), np.float32)
to = np.zeros(n, bool); to[-1] = True
data = offrl.Dataset.from_numpy(o, a, np.zeros(n, np.float32), np.zeros(n, bool), timeouts=to,
                                next_observations=o, action_bound=1.25)
quiet = ["train.eval_every=0", "train.log_every=1000"]
if ddpm_steps == 0:
    fresh = offrl.Algorithm(algo, sets=[f"schedule.steps={k}"] + quiet + sets, seed=0)
    fresh.fit(data, n_steps=steps)
    print(json.dumps({"K": k, f"fresh {algo}": score(fresh)}))
    sys.exit()
run = os.path.join(tempfile.mkdtemp(), "ddpm")
ddpm = offrl.Algorithm("diffusion-bc", sets=[f"schedule.steps={k}", 'schedule.kind="cosine"', "pre_tanh=false",
                                               f"train.checkpoint_every={ddpm_steps}"] + quiet, seed=0)
ddpm.fit(data, logdir=run, n_steps=ddpm_steps)
tuned = offrl.Algorithm(algo, sets=[f'prior="{run}"', 'prediction="noise"', f"schedule.steps={k}"] + quiet + sets, seed=0)
tuned.fit(data, n_steps=steps)
print(json.dumps({"K": k, "ddpm": score(ddpm), algo: score(tuned)}))
