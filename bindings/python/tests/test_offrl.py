"""The Python package against known answers: round trips, a short fit, save/load, the CLI's
models, bad input."""

import json
import os
import signal
import pathlib
import subprocess

import numpy as np
import pytest

import offrl

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pendulum():
    return offrl.collect("Pendulum-v1", "pendulum-swingup", steps=1000, noise=0.5, seed=0)


def test_numpy_and_parquet_round_trips(pendulum, tmp_path):
    cols = pendulum.to_numpy()
    assert cols["observations"].shape == (1000, 3) and cols["observations"].dtype == np.float32
    assert cols["terminals"].dtype == np.bool_
    again = offrl.Dataset.from_numpy(env="Pendulum-v1", **cols)
    assert again.fingerprint() == pendulum.fingerprint()
    path = tmp_path / "p.parquet"
    pendulum.save(str(path))
    back = offrl.Dataset.from_parquet(str(path))
    assert back.fingerprint() == pendulum.fingerprint()
    assert len(back) == 1000 and back.env_id == "Pendulum-v1" and back.act_dim == 1
    # float64 input converts; without next_observations the next row's is taken (D4RL's rule).
    d = offrl.Dataset.from_numpy(cols["observations"].astype(np.float64), cols["actions"],
                                 cols["rewards"], cols["terminals"], cols["timeouts"],
                                 action_bound=2.0)
    assert len(d) == 1000 - int(cols["timeouts"].sum()) - (0 if cols["timeouts"][-1] else 1)


def test_arrow_and_pandas_read_a_dataset(pendulum, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(pendulum)  # through the Arrow C stream interface
    assert table.num_rows == len(pendulum)
    assert table.column_names == ["observations", "actions", "rewards", "next_observations",
                                  "terminals", "timeouts"]
    cols = pendulum.to_numpy()
    obs = table["observations"].combine_chunks().flatten().to_numpy().reshape(-1, 3)
    np.testing.assert_array_equal(obs, cols["observations"])
    np.testing.assert_array_equal(table["timeouts"].to_numpy(), cols["timeouts"])
    assert json.loads(table.schema.metadata[b"offrl"])["env_id"] == "Pendulum-v1"
    # pyarrow's own Parquet of that table is an offrl dataset again, the same one.
    pq.write_table(table, tmp_path / "t.parquet")
    back = offrl.Dataset.from_parquet(str(tmp_path / "t.parquet"))
    assert back.fingerprint() == pendulum.fingerprint()
    frame = pendulum.to_pandas()
    assert len(frame) == len(pendulum) and list(frame.columns) == table.column_names


def test_numpy_and_arrow_share_memory_with_a_dataset(pendulum):
    import pyarrow as pa

    def address(a):
        return a.__array_interface__["data"][0]

    rng = np.random.default_rng(0)
    obs, act = rng.normal(size=(64, 3)).astype(np.float32), rng.uniform(-1, 1, (64, 1)).astype(np.float32)
    rew, flags = rng.normal(size=64).astype(np.float32), np.zeros(64, bool)
    flags[-1] = True
    ds = offrl.Dataset.from_numpy(obs, act, rew, flags, timeouts=flags, next_observations=obs)
    cols = ds.to_numpy()
    # In: C-ordered float32 arrays are the dataset's columns; out: views of them, read-only.
    for name, given in (("observations", obs), ("actions", act), ("rewards", rew), ("next_observations", obs)):
        assert address(cols[name]) == address(given), name
        assert not cols[name].flags.writeable
    copied = offrl.Dataset.from_numpy(obs, act, rew, flags, timeouts=flags, copy=True,
                                      next_observations=obs)
    assert address(copied.to_numpy()["observations"]) != address(obs)
    # Views outlive the dataset they came from (they keep it alive).
    view = offrl.Dataset.from_numpy(obs * 2, act, rew, flags, timeouts=flags).to_numpy()["actions"]
    np.testing.assert_array_equal(view, act[:-1])  # the time-out row has no next observation
    # Arrow out and back in: the same buffers all the way.
    table = pa.table(ds)
    assert table["observations"].num_chunks == 1
    values = table["observations"].chunk(0).values
    assert values.buffers()[1].address == address(obs)
    back = offrl.Dataset.from_arrow(table)
    assert address(back.to_numpy()["observations"]) == address(obs)
    assert back.fingerprint() == ds.fingerprint() and back.env_id == ds.env_id
    # A dataset read from a file is handed out the same way (its buffers moved, not copied).
    assert address(pendulum.to_numpy()["observations"]) == address(pendulum.to_numpy()["observations"])
    big = pa.table(pendulum)
    assert big["observations"].chunk(0).values.buffers()[1].address == address(pendulum.to_numpy()["observations"])


def test_from_arrow_imports_tables_with_d4rl_columns(pendulum):
    import pyarrow as pa

    cols = pendulum.to_numpy()
    # Another writer's table: one column per dimension, float64 rewards, no offrl metadata.
    plain = {f"observations_{k}": cols["observations"][:, k] for k in range(3)}
    plain.update(actions=pa.FixedSizeListArray.from_arrays(cols["actions"].ravel(), 1),
                 rewards=cols["rewards"].astype(np.float64), terminals=cols["terminals"],
                 timeouts=cols["timeouts"],
                 next_observations=pa.FixedSizeListArray.from_arrays(cols["next_observations"].ravel(), 3))
    ds = offrl.Dataset.from_arrow(pa.table(plain), env="Pendulum-v1")
    assert ds.fingerprint() == pendulum.fingerprint()
    # A stream, not only a table.
    reader = pa.RecordBatchReader.from_batches(pa.table(pendulum).schema, pa.table(pendulum).to_batches())
    assert offrl.Dataset.from_arrow(reader).fingerprint() == pendulum.fingerprint()
    with pytest.raises(TypeError, match="no `__arrow_c_stream__`"):
        offrl.Dataset.from_arrow(cols)
    with pytest.raises(ValueError, match="<arrow stream>.*missing column `actions`"):
        offrl.Dataset.from_arrow(pa.table({"observations": cols["rewards"]}), env="Pendulum-v1")


def test_fit_predict_save_load(pendulum, tmp_path):
    bc = offrl.Algorithm("bc", sets=["actor_net.width=16", "train.batch_size=32"], seed=3)
    bc.fit(pendulum, logdir=str(tmp_path / "bc"), n_steps=30)
    obs = pendulum.to_numpy()["observations"][:256]
    act = bc.predict(obs)
    assert act.shape == (256, 1) and act.dtype == np.float32
    assert np.all(np.abs(act) <= 2.0)
    bc.save(str(tmp_path / "bc.ckpt"))
    same = offrl.load(str(tmp_path / "bc.ckpt"))
    assert same.name == "bc"
    np.testing.assert_array_equal(same.predict(obs), act)
    from_run = offrl.load(str(tmp_path / "bc"))
    np.testing.assert_array_equal(from_run.predict(obs), act)
    report = bc.evaluate("Pendulum-v1", episodes=2, seed=0)
    assert len(report["returns"]) == 2


def test_sample_predict_value_and_evaluation_during_fit(pendulum):
    import gymnasium as gym

    obs = pendulum.to_numpy()["observations"][:64]
    act = pendulum.to_numpy()["actions"][:64]
    iql = offrl.Algorithm("iql", sets=["actor_net.width=16", "critic_net.width=16",
                                       "train.batch_size=32", "train.log_every=10"], seed=1)
    lines = iql.fit(pendulum, n_steps=20, eval_env=lambda: gym.make("Pendulum-v1"), eval_every=10,
                    eval_episodes=2)
    evals = [line for line in lines if "eval/return" in line]
    assert [line["step"] for line in evals] == [10, 20]
    assert all(-2000 < line["eval/return"] < 0 for line in evals)
    # sample: draws around predict's mean, reproducible from a seed, shaped like predict.
    mean = iql.predict(obs)
    a, b = iql.sample(obs, seed=5), iql.sample(obs, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == mean.shape == (64, 1) and a.dtype == np.float32
    assert not np.array_equal(a, mean) and np.all(np.abs(a) <= 2.0)
    assert iql.sample(obs[0]).shape == (1,)
    # predict_value: the critic's Q, one pair or a batch, the same numbers either way.
    q = iql.predict_value(obs, act)
    assert q.shape == (64,) and q.dtype == np.float32 and np.all(np.isfinite(q))
    assert iql.predict_value(obs[3], act[3]) == pytest.approx(float(q[3]), rel=1e-6)
    with pytest.raises(ValueError, match="64 observations but 3 actions"):
        iql.predict_value(obs, act[:3])
    bc = offrl.Algorithm("bc", sets=["actor_net.width=16", "train.batch_size=32"], seed=1)
    bc.fit(pendulum, n_steps=5)
    with pytest.raises(ValueError, match="bc learns no action value"):
        bc.predict_value(obs, act)


def test_fit_in_memory_writes_nothing_and_equals_a_run_directory(pendulum, tmp_path):
    sets = ["actor_net.width=16", "train.batch_size=32", "train.log_every=10"]
    here = offrl.Algorithm("bc", sets=sets, seed=3)
    lines = here.fit(pendulum, n_steps=30)
    assert [line["step"] for line in lines] == [10, 20, 30]
    assert all(np.isfinite(line["nll"]) for line in lines)
    assert list(tmp_path.iterdir()) == []
    on_disk = offrl.Algorithm("bc", sets=sets, seed=3)
    disk_lines = on_disk.fit(pendulum, logdir=str(tmp_path / "bc"), n_steps=30)
    assert disk_lines == lines
    obs = pendulum.to_numpy()["observations"][:64]
    np.testing.assert_array_equal(here.predict(obs), on_disk.predict(obs))
    here.save(str(tmp_path / "mem.ckpt"))
    np.testing.assert_array_equal(offrl.load(str(tmp_path / "mem.ckpt")).predict(obs),
                                  on_disk.predict(obs))


def test_ctrl_c_stops_a_fit_at_once(pendulum, tmp_path):
    # SIGINT from outside (as a terminal's Ctrl-C: fit holds the interpreter, so no Python
    # thread could raise it) a second into a run that would take hours.
    # Python's own SIGINT handler, whatever the suite inherited: a shell starts background jobs
    # with SIGINT ignored, and the run below would then never end.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sets = ["actor_net.width=16", "train.batch_size=32", "train.checkpoint_every=50"]
    bc = offrl.Algorithm("bc", sets=sets, seed=3)
    killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -INT {os.getpid()}"])
    logdir = tmp_path / "bc"
    try:
        with pytest.raises(KeyboardInterrupt):
            bc.fit(pendulum, logdir=str(logdir), n_steps=10**9)
    finally:
        killer.wait()
        signal.signal(signal.SIGINT, previous)
    assert any((logdir / "checkpoints").iterdir()), "it ran long enough to checkpoint"
    # The run directory holds whole checkpoints only: its newest opens and acts.
    obs = pendulum.to_numpy()["observations"][:8]
    assert offrl.load(str(logdir)).predict(obs).shape == (8, 1)


def test_fit_lets_other_python_threads_run(pendulum):
    import threading
    import time

    ticks, stop = [], threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=tick)
    thread.start()
    started = time.perf_counter()
    bc = offrl.Algorithm("bc", sets=["actor_net.width=64", "train.batch_size=256"], seed=3)
    bc.fit(pendulum, n_steps=2000)
    ended = time.perf_counter()
    stop.set()
    thread.join()
    during = [t for t in ticks if started < t < ended]
    # The GIL is released while training: the thread ticks through it (held, it would not).
    assert ended - started > 0.1
    assert len(during) > 0.3 * (ended - started) / 0.002, (len(during), ended - started)


def test_the_bench_grid_from_python(tmp_path, offrl_bin):
    sets = ["bc.train.steps=40", "iql.train.steps=40", "diffusion-bc.train.steps=40", "idql.samples=4"]
    out = tmp_path / "grid"
    grid = offrl.bench(["bc", "idql"], suite="pendulum", datasets=["medium"], seeds=[0],
                       profile="quick", sets=sets, out=str(out))
    assert "pendulum/medium" in grid["table"] and "IQM" in grid["stats"]
    results = sorted(out.glob("cells/*/*/seed-0/result.json"))
    assert [p.parts[-3] for p in results] == ["bc", "diffusion-bc", "idql", "iql"]
    # The CLI's grid: its report reads it, and its cells by index find them finished.
    said = subprocess.run([offrl_bin, "bench", "cell", "--manifest", grid["manifest"], "--index", "0"],
                          capture_output=True, text=True, check=True)
    assert "already finished" in said.stderr
    stamp = results[0].stat().st_mtime_ns
    offrl.bench(["bc", "idql"], suite="pendulum", datasets=["medium"], seeds=[0],
                profile="quick", sets=sets, out=str(out))
    assert results[0].stat().st_mtime_ns == stamp, "a finished cell is not recomputed"
    with pytest.raises(ValueError, match="no dataset `nope`"):
        offrl.bench(["bc"], suite="pendulum", datasets=["nope"], out=str(tmp_path / "bad"))


def test_tensorboard_reads_the_run_directory(pendulum, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    bc = offrl.Algorithm("bc", sets=["actor_net.width=16", "train.log_every=10"], seed=1)
    bc.fit(pendulum, logdir=str(tmp_path / "bc"), n_steps=30)
    lines = [json.loads(line) for line in (tmp_path / "bc" / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "bc"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {k for line in lines for k in line if k != "step"}
    for tag in events.Tags()["scalars"]:
        want = [(line["step"], line[tag]) for line in lines if tag in line]
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in want]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)


def test_a_cli_model_opens_here_and_the_other_way(pendulum, tmp_path, offrl_bin):
    exe = offrl_bin
    data = tmp_path / "p.parquet"
    pendulum.save(str(data))
    run = tmp_path / "cli-bc"
    subprocess.run([exe, "train", "bc", "--dataset", str(data), "--out", str(run), "--seed", "1",
                    "--set", "train.steps=20", "--set", "actor_net.width=16",
                    "--eval-episodes", "0"], check=True, capture_output=True)
    model = offrl.load(str(run))
    assert model.predict(np.zeros((4, 3), np.float32)).shape == (4, 1)
    here = offrl.Algorithm("bc", sets=["actor_net.width=16", "train.steps=20"], seed=1)
    here.fit(pendulum, logdir=str(tmp_path / "py-bc"))
    out = tmp_path / "eval.json"
    subprocess.run([exe, "eval", "--checkpoint", str(tmp_path / "py-bc"), "--episodes", "1",
                    "--json", str(out)], check=True, capture_output=True)
    assert json.loads(out.read_text())["kind"] == "bc"


def test_bad_input_raises_with_the_cli_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        offrl.Dataset.from_parquet(str(tmp_path / "nope.parquet"))
    with pytest.raises(ValueError, match="unknown algorithm `sac`"):
        offrl.Algorithm("sac")
    with pytest.raises(ValueError, match="lr"):
        offrl.Algorithm("bc", sets=["lr=-1"]).fit(
            offrl.collect("Pendulum-v1", "random", steps=50), logdir=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="no environment gives their bounds"):
        offrl.Dataset.from_numpy(np.zeros((5, 3)), np.full((5, 1), 2.0), np.zeros(5),
                                 np.zeros(5, bool), np.ones(5, bool))
    with pytest.raises(ValueError, match="rows"):
        offrl.Dataset.from_numpy(np.zeros((5, 3)), np.zeros((4, 1)), np.zeros(5),
                                 np.zeros(5, bool), np.zeros(5, bool))
    with pytest.raises(ValueError, match="not trained"):
        offrl.Algorithm("iql").predict(np.zeros((1, 3), np.float32))
    assert [a[0] for a in offrl.algorithms()] == [
        "bc", "td3bc", "iql", "cql", "diffusion-bc", "flow-bc", "fql", "idql", "rtb",
        "outsourced", "dxmi", "gcd"]


def test_the_whole_method_in_a_few_lines(pendulum, tmp_path):
    """Prior, critic, RTB on them: what `offrl pipeline` does, from Python."""
    small = ["train.batch_size=32", "train.log_every=5", "train.checkpoint_every=0"]
    prior = offrl.Algorithm("diffusion-bc", sets=small + ["net.width=32", "schedule.steps=5"])
    prior.fit(pendulum, logdir=str(tmp_path / "prior"), n_steps=10)
    critic = offrl.Algorithm("iql", sets=small + ["train_actor=false", "critic_net.width=32"])
    critic.fit(pendulum, logdir=str(tmp_path / "critic"), n_steps=10)
    rtb = offrl.Algorithm("rtb", sets=small + [
        f"prior={str(tmp_path / 'prior')!r}", f"critic={str(tmp_path / 'critic')!r}",
        "trajectories=2"])
    rtb.fit(pendulum, logdir=str(tmp_path / "rtb"), n_steps=2)
    obs = pendulum.to_numpy()["observations"][:8]
    assert rtb.predict(obs).shape == (8, 1)
    assert prior(obs[0]).shape == (1,)


def test_the_pipeline_in_one_call(pendulum, tmp_path):
    """offrl.pipeline: the three stages with a profile's configs, in memory or into folders."""
    sets = ["diffusion-bc.train.steps=6", "diffusion-bc.net.width=16", "iql.train.steps=6",
            "iql.critic_net.width=16", "iql.actor_net.width=16", "rtb.train.steps=2",
            "rtb.correction.net.width=16", "rtb.trajectories=2"]
    rtb, lines = offrl.pipeline(pendulum, profile="quick", sets=sets, seed=1)
    assert sorted(lines) == ["diffusion-bc", "iql", "rtb"]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="logdir"):
        rtb.save(str(tmp_path / "rtb.ckpt"))
    on_disk, disk_lines = offrl.pipeline(pendulum, profile="quick", sets=sets, seed=1,
                                         logdir=str(tmp_path / "method"))
    assert disk_lines == lines
    obs = pendulum.to_numpy()["observations"][:16]
    act = rtb.predict(obs)
    assert act.shape == (16, 1)
    np.testing.assert_array_equal(on_disk.predict(obs), act)
    np.testing.assert_array_equal(offrl.load(str(tmp_path / "method" / "rtb")).predict(obs), act)
    with pytest.raises(ValueError, match="no_such_key"):
        offrl.pipeline(pendulum, sets=["rtb.no_such_key=1"])


def test_evaluation_on_a_users_gymnasium_env(pendulum, tmp_path):
    gym = pytest.importorskip("gymnasium")
    bc = offrl.Algorithm("bc", sets=["actor_net.width=16"], seed=0)
    bc.fit(pendulum, logdir=str(tmp_path / "bc"), n_steps=10)
    by_id = bc.evaluate("Pendulum-v1", episodes=2, seed=5)
    # gymnasium's own Pendulum, as an object and through a factory: the native one is checked
    # step for step against it (tests/pendulum_vs_gymnasium.rs), so the returns agree.
    obj = bc.evaluate(gym.make("Pendulum-v1"), episodes=2, seed=5)
    made = bc.evaluate(lambda: gym.make("Pendulum-v1"), episodes=2, seed=5, n_envs=2)
    assert obj["env"] == "Pendulum-v1"
    np.testing.assert_allclose(obj["returns"], by_id["returns"], rtol=1e-4)
    np.testing.assert_allclose(made["returns"], by_id["returns"], rtol=1e-4)
    # A policy inside the user's own loop.
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = env.step(bc(obs))
    with pytest.raises(ValueError, match="environment"):
        bc.evaluate(42)


def test_a_minari_dataset_in_its_arrow_storage(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    gym = pytest.importorskip("gymnasium")
    from minari.data_collector import EpisodeBuffer
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = gym.make("Pendulum-v1")
    o, _ = env.reset(seed=0)
    obs, acts, rews = [o], [], []
    for _ in range(20):
        a = env.action_space.sample()
        o, r, _, _, _ = env.step(a)
        obs.append(o); acts.append(a); rews.append(r)
    buf = EpisodeBuffer(id=0, observations=np.array(obs), actions=np.array(acts),
                        rewards=np.array(rews), terminations=np.zeros(20, bool),
                        truncations=np.eye(20, dtype=bool)[-1])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("py/arrow-v0", [buf], env=env,
                                           algorithm_name="random", data_format="arrow")
    d = offrl.Dataset.from_minari(str(tmp_path / "py" / "arrow-v0"))
    assert len(d) == 20 and d.env_id == "Pendulum-v1"
    np.testing.assert_array_equal(d.to_numpy()["rewards"], np.array(rews, np.float32))


def test_the_quickstart_example_runs(tmp_path):
    import sys

    example = ROOT / "examples" / "quickstart.py"
    assert len(example.read_text().splitlines()) <= 20
    out = subprocess.run([sys.executable, str(example), "50"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "same actions after loading: True" in out.stdout
    assert (tmp_path / "runs" / "quickstart-iql" / "metrics.jsonl").exists()


def test_a_profile_sets_an_algorithm_as_the_grid_does():
    config = json.loads(offrl.Algorithm("iql", profile="cpu", sets=["train.checkpoint_every=500"]).config)
    assert config["train"]["steps"] == 30000  # configs/profiles/cpu.toml's iql line
    assert config["train"]["checkpoint_every"] == 500  # sets come after the profile's
    with pytest.raises(ValueError):
        offrl.Algorithm("iql", profile="no-such-profile")
