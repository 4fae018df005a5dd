"""Read D4RL / Minari HDF5 files as whole arrays for offrl's importers (src/dataset/import.rs).

Each array comes back as (bytes, shape) of a C-contiguous float32 or bool array, so Rust copies
raw buffers and never touches elements one at a time. Problems with the file's layout raise
LayoutError with a message naming the key; Rust reports it with the file name.
"""

import h5py
import numpy as np


class LayoutError(Exception):
    pass


def _open(path):
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise LayoutError(f"not a readable HDF5 file ({e})") from None


def _array(ds, dtype, name):
    if not isinstance(ds, h5py.Dataset):
        raise LayoutError(f"`{name}` is a group, expected an array (dict spaces are not supported)")
    try:
        a = np.ascontiguousarray(ds[()], dtype=dtype)
    except (TypeError, ValueError) as e:
        raise LayoutError(f"`{name}` (dtype {ds.dtype}) cannot be read as {np.dtype(dtype)}: {e}") from None
    return (a.tobytes(), list(a.shape))


def _datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


D4RL_KEYS = [
    ("observations", np.float32),
    ("actions", np.float32),
    ("rewards", np.float32),
    ("next_observations", np.float32),
    ("terminals", np.bool_),
    ("timeouts", np.bool_),
]


def read_d4rl(path):
    """The flat D4RL keys present in the file, plus `keys` (every dataset path) and `source`."""
    with _open(path) as f:
        out = {"keys": _datasets(f), "source": None}
        for name, dtype in D4RL_KEYS:
            if name in f:
                out[name] = _array(f[name], dtype, name)
        if "infos/source" in f and isinstance(f["infos/source"], h5py.Dataset):
            src = f["infos/source"][()]
            out["source"] = src.decode("utf-8", "replace") if isinstance(src, bytes) else str(src)
        return out


def _episode_index(name):
    try:
        return int(name.split("_", 1)[1])
    except (IndexError, ValueError):
        raise LayoutError(f"unexpected group `{name}` (Minari episodes are named episode_<id>)") from None


def read_minari(path):
    """All episodes in id order, flattened to transitions: obs[t], obs[t+1], actions, rewards,
    terminations, truncations, plus each episode's length and group name."""
    with _open(path) as f:
        names = sorted((k for k in f.keys() if isinstance(f[k], h5py.Group)), key=_episode_index)
        if not names:
            raise LayoutError("no episode groups (episode_0, episode_1, ...) in the file")
        cols = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")}
        lengths = []
        for name in names:
            g = f[name]
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                if key not in g:
                    raise LayoutError(f"`{name}/{key}` is missing (found: {', '.join(sorted(g.keys()))})")
                if not isinstance(g[key], h5py.Dataset):
                    raise LayoutError(f"`{name}/{key}` is a group: dict spaces are not supported")
            try:
                obs = np.asarray(g["observations"][()], dtype=np.float32)
                act = np.asarray(g["actions"][()], dtype=np.float32)
                rew = np.asarray(g["rewards"][()], dtype=np.float32)
            except (TypeError, ValueError) as e:
                raise LayoutError(f"`{name}`: cannot read as float32: {e}") from None
            term = np.asarray(g["terminations"][()], dtype=np.bool_)
            trunc = np.asarray(g["truncations"][()], dtype=np.bool_)
            t = len(rew)
            if act.ndim == 1:
                act = act.reshape(-1, 1)
            if obs.ndim != 2 or act.ndim != 2 or rew.ndim != 1:
                raise LayoutError(
                    f"`{name}`: observations {obs.shape}, actions {act.shape}, rewards {rew.shape}: "
                    "expected [T+1, obs_dim], [T, act_dim], [T]"
                )
            for key, n, want in (
                ("observations", len(obs), t + 1),
                ("actions", len(act), t),
                ("terminations", len(term), t),
                ("truncations", len(trunc), t),
            ):
                if n != want:
                    raise LayoutError(f"`{name}/{key}` has {n} rows, expected {want} ({t} rewards)")
            cols["observations"].append(obs[:-1])
            cols["next_observations"].append(obs[1:])
            cols["actions"].append(act)
            cols["rewards"].append(rew)
            cols["terminals"].append(term)
            cols["timeouts"].append(trunc)
            lengths.append(t)
        dims = {len(set(a.shape[1] for a in cols[k])) for k in ("observations", "actions")}
        if dims != {1}:
            raise LayoutError("episodes disagree on observation or action dims")
        out = {"lengths": lengths}
        for key, parts in cols.items():
            a = np.ascontiguousarray(np.concatenate(parts))
            out[key] = (a.tobytes(), list(a.shape))
        out["episodes"] = names
        return out
