//! `import offrl`: the library from Python, shaped like d3rlpy (datasets in, `fit`, `predict`,
//! `save`/`load`). A thin layer: datasets, algorithms, configs, run directories and
//! checkpoints are offrl's own, so a model trained by the CLI opens here and the other way round.
//! Arrays come in through NumPy's own conversion (`ascontiguousarray(x, float32)`: no copy when
//! they already are C-ordered float32) and go out as NumPy arrays owning offrl's buffers. A
//! dataset's float columns are Arrow buffers shared with whatever handed them over (a NumPy
//! array, a pyarrow table) and handed out as views (`to_numpy`, `pyarrow.table(ds)`): no copies.

use std::path::{Path, PathBuf};

use numpy::ndarray::{Array2, ArrayView2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use offrl::algos::{self, AlgoKind};
use offrl::backend::BackendKind;
use offrl::dataset::columns::{Column, Columns, ImportOptions};
use offrl::dataset::{io, Dataset as Data};
use offrl::envs::{BoxSpace, Env, Step};
use offrl::policy::{ActionScorer, Policy};
use offrl::train::{DatasetInfo, OfflineAlgorithm};

/// offrl's errors as Python's: a missing file is `FileNotFoundError`, everything else (bad
/// values, configs, data) `ValueError`; the message is the CLI's.
fn py_err(e: impl Into<anyhow::Error>) -> PyErr {
    let e: anyhow::Error = e.into();
    let missing = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    });
    let text = offrl::error::report(e.as_ref());
    if missing {
        PyFileNotFoundError::new_err(text)
    } else {
        PyValueError::new_err(text)
    }
}

/// Run a training `f` without holding the GIL (other Python threads run meanwhile), stopping
/// at the next update when the user presses Ctrl-C (Python's pending signals, checked after
/// every update with the GIL taken for that moment): the `KeyboardInterrupt` (or whatever the
/// signal handler raised) comes back as is; a run directory keeps its last checkpoint.
fn interruptible<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> offrl::Result<T> + Send,
) -> PyResult<T> {
    use std::sync::{Arc, Mutex};
    let raised: Arc<Mutex<Option<PyErr>>> = Arc::default();
    let slot = Arc::clone(&raised);
    let result = py.detach(move || {
        let stop = move || {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    *slot.lock().expect("signal slot") = Some(e);
                    true
                }
            })
        };
        offrl::train::interrupt::watch(stop, f)
    });
    let pending = raised.lock().expect("signal slot").take();
    match (result, pending) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(signal)) => Err(signal),
        (Err(e), None) => Err(py_err(e)),
    }
}

/// A dataset of transitions (D4RL's columns), in memory. Immutable (`frozen`): the NumPy
/// and Arrow views it hands out stay valid as long as they keep it alive.
#[pyclass(name = "Dataset", module = "offrl", frozen)]
struct Dataset {
    inner: Data,
}

impl From<Data> for Dataset {
    /// The float columns move into shared Arrow buffers (no copy) so that every view handed
    /// out later is of this memory.
    fn from(mut inner: Data) -> Self {
        inner.share();
        Self { inner }
    }
}

#[pymethods]
impl Dataset {
    /// Load an offrl Parquet file (what `offrl dataset make/import/collect` write).
    #[staticmethod]
    fn from_parquet(path: PathBuf) -> PyResult<Self> {
        io::load(&path).map(Self::from).map_err(py_err)
    }

    /// A Minari dataset folder (its arrow and parquet storages are read natively; HDF5 needs
    /// the CLI's `offrl dataset import --format minari`). `env` overrides its env spec's id.
    #[staticmethod]
    #[pyo3(signature = (path, env=None))]
    fn from_minari(path: PathBuf, env: Option<String>) -> PyResult<Self> {
        offrl::dataset::minari::import(&path, env.as_deref())
            .map(Self::from)
            .map_err(py_err)
    }

    /// Arrays in D4RL's layout (any numeric dtype; floats become float32, flags bool). Without
    /// `next_observations` the next row's observation is used and rows ending in a time-out
    /// are dropped, as D4RL's `qlearning_dataset` does. `env` (e.g. "Hopper-v5") gives the
    /// action bounds and reference returns; without it, `action_bound` (default: 1 when every
    /// action lies in [-1, 1]).
    ///
    /// C-ordered float32 arrays are shared, not copied (as `pyarrow.array` does): change them
    /// afterwards and the dataset changes too. `copy=True` takes private copies.
    #[staticmethod]
    #[pyo3(signature = (observations, actions, rewards, terminals, timeouts=None, next_observations=None, env=None, action_bound=None, copy=false))]
    #[allow(clippy::too_many_arguments)]
    fn from_numpy(
        py: Python<'_>,
        observations: &Bound<'_, PyAny>,
        actions: &Bound<'_, PyAny>,
        rewards: &Bound<'_, PyAny>,
        terminals: &Bound<'_, PyAny>,
        timeouts: Option<&Bound<'_, PyAny>>,
        next_observations: Option<&Bound<'_, PyAny>>,
        env: Option<String>,
        action_bound: Option<f32>,
        copy: bool,
    ) -> PyResult<Self> {
        let mut cols = Columns {
            noun: "array",
            ..Default::default()
        };
        let mut arrays = vec![
            ("observations", observations, 2),
            ("actions", actions, 2),
            ("rewards", rewards, 1),
            ("terminals", terminals, 0),
        ];
        if let Some(t) = timeouts {
            arrays.push(("timeouts", t, 0));
        }
        if let Some(n) = next_observations {
            arrays.push(("next_observations", n, 2));
        }
        for (name, array, ndim) in arrays {
            cols.found.push(name.to_string());
            cols.by_name
                .insert(name.to_string(), column(py, name, array, ndim, copy)?);
        }
        let opts = ImportOptions {
            env,
            action_bound,
            ..Default::default()
        };
        let source = serde_json::json!({ "importer": "python", "from": "numpy arrays" });
        let origin = Path::new("<numpy arrays>");
        let data =
            offrl::dataset::columns::from_columns(origin, cols, &opts, source).map_err(py_err)?;
        Ok(Self::from(data))
    }

    /// Any Arrow table or stream (anything with `__arrow_c_stream__`: a pyarrow Table or
    /// RecordBatchReader, a polars DataFrame, a DuckDB result) with D4RL's column names, in
    /// the layouts `offrl dataset import --format arrow` reads. A table made from an offrl
    /// dataset (`pyarrow.table(ds)`) comes back with its metadata; other tables take `env` or
    /// `action_bound` as `from_numpy` does. Float32 columns of a one-chunk table are shared.
    #[staticmethod]
    #[pyo3(signature = (table, env=None, action_bound=None))]
    fn from_arrow(
        table: &Bound<'_, PyAny>,
        env: Option<String>,
        action_bound: Option<f32>,
    ) -> PyResult<Self> {
        let batches = arrow_stream(table)?;
        let opts = ImportOptions {
            env,
            action_bound,
            ..Default::default()
        };
        let source = serde_json::json!({ "importer": "python", "from": "an Arrow stream" });
        offrl::dataset::columns::from_record_batches(
            Path::new("<arrow stream>"),
            &batches,
            &opts,
            source,
        )
        .map(Self::from)
        .map_err(py_err)
    }

    /// Write an offrl Parquet file (atomically; the CLI reads it).
    fn save(&self, path: PathBuf) -> PyResult<()> {
        io::save(&self.inner, &path).map_err(py_err)
    }

    /// The Arrow PyCapsule stream interface: `pyarrow.table(ds)` (and polars, DuckDB) read the
    /// dataset as a table with D4RL's columns (fixed-size float32 lists for vectors) and its
    /// metadata under the schema's `offrl` key. The float columns are views of the dataset's
    /// buffers; the flags are bit-packed for Arrow (n/8 bytes each).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, pyo3::types::PyCapsule>> {
        use arrow_array::ffi_stream::FFI_ArrowArrayStream;
        use arrow_array::{RecordBatch, RecordBatchIterator};
        // The schema is the dataset's; a requested one is a hint consumers may send (ignored).
        let _ = requested_schema;
        let batches = io::record_batches(&self.inner, 1 << 16);
        let schema = batches[0].schema();
        let reader = RecordBatchIterator::new(
            batches
                .into_iter()
                .map(Ok::<RecordBatch, arrow_schema::ArrowError>),
            schema,
        );
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        // A consumer moves the stream out (its release set to null); dropping what is left
        // releases it only if none did.
        pyo3::types::PyCapsule::new_with_value_and_destructor(
            py,
            stream,
            c"arrow_array_stream",
            |stream, _| drop(stream),
        )
    }

    /// The dataset as a pandas DataFrame (through pyarrow: vectors as arrays per row).
    fn to_pandas<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("pyarrow")?
            .call_method1("table", (slf,))?
            .call_method0("to_pandas")
    }

    /// The columns as NumPy arrays (a dict of D4RL's names). The float columns are read-only
    /// views of the dataset's memory (they keep it alive; `.copy()` one to change it), the
    /// flags bool copies.
    fn to_numpy<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let d = &slf.get().inner;
        let n = d.len();
        let out = PyDict::new(py);
        let view = |v: &[f32], w: usize| -> PyResult<Bound<'py, PyAny>> {
            let a = ArrayView2::from_shape((n, w), v).map_err(py_err_shape)?;
            // SAFETY: the dataset is frozen, so its buffers are never written or reallocated,
            // and the array keeps the dataset alive as its base object.
            let a = unsafe { PyArray2::borrow_from_array(&a, slf.clone().into_any()) };
            let kwargs = PyDict::new(py);
            kwargs.set_item("write", false)?;
            a.call_method("setflags", (), Some(&kwargs))?;
            Ok(a.into_any())
        };
        out.set_item("observations", view(&d.observations, d.obs_dim())?)?;
        out.set_item("actions", view(&d.actions, d.act_dim())?)?;
        out.set_item(
            "rewards",
            view(&d.rewards, 1)?.call_method1("reshape", (n,))?,
        )?;
        out.set_item(
            "next_observations",
            view(&d.next_observations, d.obs_dim())?,
        )?;
        out.set_item("terminals", PyArray1::from_slice(py, &d.terminals))?;
        out.set_item("timeouts", PyArray1::from_slice(py, &d.timeouts))?;
        Ok(out)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn env_id(&self) -> String {
        self.inner.meta.env_id.clone()
    }

    #[getter]
    fn obs_dim(&self) -> usize {
        self.inner.obs_dim()
    }

    #[getter]
    fn act_dim(&self) -> usize {
        self.inner.act_dim()
    }

    /// Undiscounted return of every episode.
    fn episode_returns(&self) -> Vec<f64> {
        self.inner.episode_returns()
    }

    /// The content checksum (what checkpoints record to refuse resuming on other data).
    fn fingerprint(&self) -> String {
        self.inner.fingerprint()
    }

    fn __repr__(&self) -> String {
        let d = &self.inner;
        format!(
            "offrl.Dataset({} transitions of {}, obs_dim {}, act_dim {}, {} episodes)",
            d.len(),
            d.meta.env_id,
            d.obs_dim(),
            d.act_dim(),
            d.episodes().len()
        )
    }
}

fn py_err_shape(e: numpy::ndarray::ShapeError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// One row `[dim]` or rows `[n, dim]` of `what` as C-ordered float32 (read in place when they
/// already are): the array, `n` and whether it was one row.
fn rows<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    dim: usize,
    what: &str,
) -> PyResult<(PyReadonlyArrayDyn<'py, f32>, usize, bool)> {
    let a: PyReadonlyArrayDyn<'py, f32> = float32(py, x)?.extract()?;
    let (n, single) = match a.shape() {
        [w] if *w == dim => (1, true),
        [n, w] if *w == dim => (*n, false),
        shape => {
            return Err(PyValueError::new_err(format!(
                "{what} of shape {shape:?}: the model takes [{dim}] or [n, {dim}]"
            )))
        }
    };
    Ok((a, n, single))
}

/// Episodes of `policy` in `env` (an id, a gymnasium environment, or a callable making one: see
/// `Algorithm.evaluate`): the environment's id and the report.
fn evaluate_in(
    py: Python<'_>,
    policy: &mut dyn Policy,
    env: &Bound<'_, PyAny>,
    episodes: usize,
    seed: u64,
    n_envs: usize,
) -> PyResult<(String, offrl::eval::EvalReport)> {
    let (id, report) = if let Ok(id) = env.extract::<String>() {
        let reference = offrl::dataset::reference_scores_for(&id);
        let n = n_envs.min(episodes).max(1);
        let make = || offrl::envs::make(&id);
        let r = offrl::eval::evaluate(&mut *policy, make, n, episodes, seed, reference);
        (id.clone(), r)
    } else {
        let (factory, n) = if env.hasattr("step")? {
            (None, 1) // one object: its episodes run one after another
        } else if env.is_callable() {
            (Some(env), n_envs.min(episodes).max(1))
        } else {
            return Err(PyValueError::new_err(
                "env: an environment id, a gymnasium environment, or a callable making one",
            ));
        };
        let first = PyEnv::new(py, &factory.map_or_else(|| Ok(env.clone()), |f| f.call0())?)?;
        let id = first.id.clone();
        let reference = offrl::dataset::reference_scores_for(&id);
        let first = std::cell::RefCell::new(Some(first));
        let make = || -> offrl::Result<Box<dyn Env>> {
            if let Some(e) = first.borrow_mut().take() {
                return Ok(Box::new(e));
            }
            let made = match factory {
                Some(f) => f.call0().and_then(|e| PyEnv::new(py, &e)),
                None => PyEnv::new(py, env),
            };
            made.map(|e| Box::new(e) as Box<dyn Env>)
                .map_err(|e| offrl::Error::env(&id, e.to_string()))
        };
        let r = offrl::eval::evaluate(&mut *policy, make, n, episodes, seed, reference);
        (id.clone(), r)
    };
    Ok((id, report.map_err(py_err)?))
}

/// `values` (`n` rows of `width`) handed to NumPy without a copy: `[width]` for one row.
fn out_rows<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    n: usize,
    width: usize,
    single: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if single {
        return Ok(PyArray1::from_vec(py, values).into_any());
    }
    let a = Array2::from_shape_vec((n, width), values).map_err(py_err_shape)?;
    Ok(a.into_pyarray(py).into_any())
}

/// `array` as a C-ordered float32 NumPy array (a view when it already is one).
fn float32<'py>(py: Python<'py>, array: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    py.import("numpy")?
        .call_method1("ascontiguousarray", (array, "float32"))
}

/// Any array-like as its float32 values in C order (one conversion by NumPy, then one copy out
/// of its buffer; no per-element Python objects): for small arrays (spaces, one observation).
fn floats(py: Python<'_>, array: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    let a: PyReadonlyArrayDyn<'_, f32> = float32(py, array)?.extract()?;
    Ok(a.as_slice()?.to_vec())
}

/// One D4RL column from a NumPy-like array: `ndim` 2 for vectors (a 1-D array is one value per
/// row), 1 for rewards, 0 for flags (nonzero is true). The values share the (converted)
/// array's memory unless `copy`.
fn column(
    py: Python<'_>,
    name: &str,
    array: &Bound<'_, PyAny>,
    ndim: usize,
    copy: bool,
) -> PyResult<Column> {
    let np = py.import("numpy")?;
    let a = if ndim == 0 {
        float32(py, &np.call_method1("not_equal", (array, 0))?)?
    } else {
        float32(py, array)?
    };
    let owner = a.clone().unbind();
    let a: PyReadonlyArrayDyn<'_, f32> = a.extract()?;
    let shape = a.shape().to_vec();
    let (rows, width) = match (ndim, shape.as_slice()) {
        (2, [rows, width]) => (*rows, *width),
        (2, [rows]) => (*rows, 1),
        (0 | 1, [rows]) => (*rows, 1),
        _ => {
            return Err(PyValueError::new_err(format!(
                "`{name}` has shape {shape:?}, expected {}",
                if ndim == 2 { "[rows, dim]" } else { "[rows]" }
            )))
        }
    };
    let values = a.as_slice()?;
    let aligned = values.as_ptr().align_offset(std::mem::align_of::<f32>()) == 0;
    let values = if copy || !aligned || values.is_empty() {
        values.to_vec().into()
    } else {
        shared(values, owner)
    };
    Ok(Column {
        values,
        rows,
        width,
    })
}

/// `values` (the memory of the NumPy array `owner`) as an Arrow buffer that keeps `owner`
/// alive: released (its reference dropped, under the GIL or by pyo3's pool) with the last
/// user of the buffer.
fn shared(values: &[f32], owner: Py<PyAny>) -> offrl::dataset::Floats {
    use arrow_buffer::{Buffer, ScalarBuffer};
    let owner = std::sync::Arc::new(std::panic::AssertUnwindSafe(owner));
    let ptr = std::ptr::NonNull::from(values).cast::<u8>();
    // SAFETY: `owner` keeps the array, and so `values`, alive for as long as the buffer is.
    let buffer =
        unsafe { Buffer::from_custom_allocation(ptr, std::mem::size_of_val(values), owner) };
    ScalarBuffer::<f32>::new(buffer, 0, values.len()).into()
}

/// The record batches of any object with the Arrow PyCapsule stream interface.
fn arrow_stream(table: &Bound<'_, PyAny>) -> PyResult<Vec<arrow_array::RecordBatch>> {
    use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
    use pyo3::types::{PyCapsule, PyCapsuleMethods};
    if !table.hasattr("__arrow_c_stream__")? {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "a {} is not an Arrow table or stream (no `__arrow_c_stream__`): pass a pyarrow \
             Table or RecordBatchReader, a polars DataFrame, or use Dataset.from_numpy",
            table.get_type().name()?
        )));
    }
    let capsule = table.call_method0("__arrow_c_stream__")?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let ptr = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: a capsule named `arrow_array_stream` holds an `ArrowArrayStream`; `from_raw`
    // moves it out and leaves a released one behind for the capsule's destructor.
    let reader =
        unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast::<FFI_ArrowArrayStream>()) }
            .map_err(|e| PyValueError::new_err(format!("<arrow stream>: {e}")))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PyValueError::new_err(format!("<arrow stream>: reading a batch: {e}")))
}

/// Roll a behaviour policy out in an environment: `offrl collect` as a function.
#[pyfunction]
#[pyo3(signature = (env, policy, steps, noise=0.0, seed=0, stochastic=false))]
fn collect(
    env: &str,
    policy: &str,
    steps: usize,
    noise: f32,
    seed: u64,
    stochastic: bool,
) -> PyResult<Dataset> {
    let part = offrl::dataset::registry::CollectPart {
        policy: policy.to_string(),
        steps,
        stochastic,
        noise,
    };
    offrl::dataset::collect::collect(env, &[part], seed, 1.0, None, false)
        .map(Dataset::from)
        .map_err(py_err)
}

/// An algorithm by name (`offrl.algorithms()` lists them) with its config: the defaults, a
/// config file or built-in config name, then `key=value` overrides — as `offrl train` takes them.
#[pyclass(name = "Algorithm", module = "offrl", unsendable)]
struct Algorithm {
    name: String,
    kind: AlgoKind,
    config: serde_json::Value,
    seed: u64,
    trained: Option<Box<dyn OfflineAlgorithm>>,
    /// What `predict`, `sample` and `predict_value` act with, made on first use.
    policy: Option<Box<dyn Policy>>,
    sampler: Option<Box<dyn Policy>>,
    value: Option<Box<dyn ActionScorer>>,
    run_dir: Option<PathBuf>,
    /// Trained here without a run directory: the data's identity and the step, for `save`.
    in_memory: Option<(DatasetInfo, usize)>,
    /// Why `save` cannot write this model, when it cannot.
    unsaveable: Option<&'static str>,
}

impl Algorithm {
    fn trained(&self) -> PyResult<&dyn OfflineAlgorithm> {
        self.trained.as_deref().ok_or_else(|| {
            PyValueError::new_err(format!(
                "{} is not trained: call fit(dataset, ...) or offrl.load(path) first",
                self.name
            ))
        })
    }

    fn from_trained(algo: Box<dyn OfflineAlgorithm>, run_dir: Option<PathBuf>) -> PyResult<Self> {
        let name = algo.name().to_string();
        let info = algos::ALGORITHMS
            .iter()
            .find(|a| a.trained.is_some_and(|k| k.name() == name))
            .ok_or_else(|| PyValueError::new_err(format!("unknown model kind `{name}`")))?;
        Ok(Self {
            name: info.name.to_string(),
            kind: info.trained.expect("found by its kind"),
            config: serde_json::Value::Null,
            seed: 0,
            trained: Some(algo),
            policy: None,
            sampler: None,
            value: None,
            run_dir,
            in_memory: None,
            unsaveable: None,
        })
    }
}

#[pymethods]
impl Algorithm {
    /// An algorithm by its registry name, its config built as `offrl train` and `offrl bench`
    /// build it: the defaults, a config file, a profile's settings for it (`profile`: `quick`,
    /// `cpu`, `paper` or a TOML path, as `offrl bench --profile` takes), then `key=value` `sets`.
    #[new]
    #[pyo3(signature = (name, config=None, sets=Vec::new(), seed=0, profile=None))]
    fn new(
        name: &str,
        config: Option<PathBuf>,
        sets: Vec<String>,
        seed: u64,
        profile: Option<String>,
    ) -> PyResult<Self> {
        let info = algos::algorithm(name).map_err(py_err)?;
        let kind = info.trained.ok_or_else(|| {
            PyValueError::new_err(format!(
                "`{name}` is composed from trained models ({}), not trained itself",
                info.needs.join(", ")
            ))
        })?;
        let mut all = match profile {
            Some(p) => offrl::bench::cell::Profile::load(&p)
                .map_err(py_err)?
                .overrides_for(info.name),
            None => Vec::new(),
        };
        all.extend(sets);
        let config = offrl::config::resolve(&kind.default_config(), config.as_deref(), &all)
            .map_err(py_err)?;
        Ok(Self {
            name: info.name.to_string(),
            kind,
            config,
            seed,
            trained: None,
            policy: None,
            sampler: None,
            value: None,
            run_dir: None,
            in_memory: None,
            unsaveable: None,
        })
    }

    /// Train on `dataset` for `n_steps` updates (default: the config's `train.steps`); returns
    /// the logged lines as a list of dicts (`step` and each metric). With `logdir`, into that
    /// run directory (metrics.jsonl, plots, checkpoints; training the same `logdir` again
    /// resumes it); without, in memory: nothing is written. With `eval_env` (what `evaluate`
    /// takes: an id, a gymnasium environment or a callable making one), `eval_episodes`
    /// episodes every `eval_every` updates (default: a tenth of the run) are logged as
    /// `eval/return` and, where the id has reference returns, `eval/score`.
    #[pyo3(signature = (dataset, logdir=None, n_steps=None, eval_env=None, eval_every=None, eval_episodes=10))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        dataset: &Dataset,
        logdir: Option<PathBuf>,
        n_steps: Option<usize>,
        eval_env: Option<Bound<'py, PyAny>>,
        eval_every: Option<usize>,
        eval_episodes: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut config = self.config.clone();
        if let Some(steps) = n_steps {
            config["train"]["steps"] = steps.into();
        }
        if eval_env.is_some() {
            let steps = config["train"]["steps"].as_u64().unwrap_or(0) as usize;
            config["train"]["eval_every"] = eval_every.unwrap_or((steps / 10).max(1)).into();
        }
        let device = BackendKind::Flex.train_device().map_err(py_err)?;
        let env = eval_env.map(Bound::unbind);
        let (kind, seed) = (self.kind, self.seed);
        let trained = interruptible(py, || {
            // Between updates, with the GIL: the environment may be a Python object.
            let mut hook = |step: usize, algo: &dyn OfflineAlgorithm| {
                let env = env.as_ref().expect("a hook only with an environment");
                let mut policy = algo.policy()?;
                let episode_seed = seed.wrapping_add(step as u64);
                let (_, report) = Python::attach(|py| {
                    evaluate_in(
                        py,
                        policy.as_mut(),
                        env.bind(py),
                        eval_episodes,
                        episode_seed,
                        1,
                    )
                })
                .map_err(|e| offrl::Error::env("eval_env", e.to_string()))?;
                let mut m = vec![("eval/return", report.mean)];
                m.extend(report.normalized.map(|s| ("eval/score", s)));
                Ok(m)
            };
            let hook: Option<offrl::train::EvalHook<'_>> = match env {
                Some(_) => Some(&mut hook),
                None => None,
            };
            algos::train(
                kind,
                &config,
                &dataset.inner,
                logdir.as_deref(),
                seed,
                &device,
                hook,
            )
        })?;
        let lines = history_lines(py, &trained.history)?;
        let steps = config["train"]["steps"].as_u64().unwrap_or(0) as usize;
        self.in_memory = logdir
            .is_none()
            .then(|| (DatasetInfo::of(&dataset.inner), steps));
        self.config = config;
        self.trained = Some(trained.algo);
        (self.policy, self.sampler, self.value) = (None, None, None);
        self.run_dir = logdir;
        Ok(lines)
    }

    /// Actions for one observation `[obs_dim]` or a batch `[n, obs_dim]` (any float dtype; a
    /// C-ordered float32 batch is read in place): float32 `[act_dim]` or `[n, act_dim]`. The
    /// acting policy: the Gaussian actors' mean, the diffusion and flow policies' chains.
    fn predict<'py>(
        &mut self,
        py: Python<'py>,
        obs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = self.trained()?.spec().clone();
        let (obs, n, single) = rows(py, obs, spec.obs_dim, "observations")?;
        if self.policy.is_none() {
            self.policy = Some(self.trained()?.policy().map_err(py_err)?);
        }
        let policy = self.policy.as_mut().expect("set above");
        let actions = policy.act(obs.as_slice()?, n).map_err(py_err)?;
        out_rows(py, actions, n, spec.act_dim, single)
    }

    /// Actions drawn from the learned distribution, shaped as `predict`'s: the Gaussian actors
    /// (BC, IQL, CQL) sample instead of acting at their mean; the others act as `predict`. Draws
    /// continue one generator, seeded with the model's seed; `seed` restarts it.
    #[pyo3(signature = (obs, seed=None))]
    fn sample<'py>(
        &mut self,
        py: Python<'py>,
        obs: &Bound<'py, PyAny>,
        seed: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = self.trained()?.spec().clone();
        let (obs, n, single) = rows(py, obs, spec.obs_dim, "observations")?;
        if self.sampler.is_none() || seed.is_some() {
            let seed = seed.unwrap_or(self.seed);
            self.sampler = Some(self.trained()?.sampling_policy(seed).map_err(py_err)?);
        }
        let sampler = self.sampler.as_mut().expect("set above");
        let actions = sampler.act(obs.as_slice()?, n).map_err(py_err)?;
        out_rows(py, actions, n, spec.act_dim, single)
    }

    /// `Q(s, a)` of the algorithm's critic (IQL, CQL, TD3+BC, FQL; RTB and the outsourced
    /// sampler: the IQL critic they fine-tune on) for raw observations and environment actions,
    /// one pair `[obs_dim]`, `[act_dim]` or a batch: float32 scalar or `[n]`.
    fn predict_value<'py>(
        &mut self,
        py: Python<'py>,
        obs: &Bound<'py, PyAny>,
        action: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = self.trained()?.spec().clone();
        let (obs, n, single) = rows(py, obs, spec.obs_dim, "observations")?;
        let (act, m, _) = rows(py, action, spec.act_dim, "actions")?;
        if m != n {
            return Err(PyValueError::new_err(format!(
                "{n} observations but {m} actions: one action per observation"
            )));
        }
        if self.value.is_none() {
            self.value = Some(self.trained()?.value_function().ok_or_else(|| {
                PyValueError::new_err(format!(
                    "{} learns no action value Q(s, a): predict_value needs a critic (iql, cql, \
                     td3bc, fql, rtb, outsourced)",
                    self.name
                ))
            })?);
        }
        let scorer = self.value.as_ref().expect("set above");
        let q = scorer
            .score(obs.as_slice()?, act.as_slice()?, n)
            .map_err(py_err)?;
        if single {
            return Ok(q[0].into_pyobject(py)?.into_any());
        }
        Ok(PyArray1::from_vec(py, q).into_any())
    }

    /// Episodes of the policy in `env`: an environment id (native, e.g. "Pendulum-v1"), a
    /// gymnasium environment object (wrappers and all; one episode at a time), or a callable
    /// that makes one (called `n_envs` times, stepped together). Returns the mean, std,
    /// per-episode returns and the D4RL-normalised score when the id has reference returns.
    #[pyo3(signature = (env, episodes=10, seed=0, n_envs=10))]
    fn evaluate<'py>(
        &mut self,
        py: Python<'py>,
        env: &Bound<'py, PyAny>,
        episodes: usize,
        seed: u64,
        n_envs: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut policy = self.trained()?.policy().map_err(py_err)?;
        let (id, report) = evaluate_in(py, policy.as_mut(), env, episodes, seed, n_envs)?;
        let out = PyDict::new(py);
        out.set_item("env", id)?;
        out.set_item("mean", report.mean)?;
        out.set_item("std", report.std)?;
        out.set_item("returns", report.returns)?;
        out.set_item("lengths", report.lengths)?;
        out.set_item("normalized", report.normalized)?;
        Ok(out)
    }

    /// The policy as a function, for a gymnasium loop: `env.step(model(obs))`.
    fn __call__<'py>(
        &mut self,
        py: Python<'py>,
        obs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.predict(py, obs)
    }

    /// Copy the newest checkpoint of the run to `path` (a checkpoint folder that `offrl.load`
    /// and `offrl eval --checkpoint` open).
    fn save(&mut self, path: PathBuf) -> PyResult<()> {
        self.trained()?;
        if let Some(why) = self.unsaveable {
            return Err(PyValueError::new_err(why));
        }
        if let (Some((info, step)), Some(algo)) = (&self.in_memory, self.trained.as_deref_mut()) {
            let recorded = algos::run_config(self.kind, &self.config, self.seed);
            offrl::train::save_checkpoint(algo, &path, &recorded, info, *step).map_err(py_err)?;
            return Ok(());
        }
        let run = self.run_dir.as_ref().ok_or_else(|| {
            PyValueError::new_err("this model was loaded, not trained here: it is saved already")
        })?;
        let newest = offrl::train::checkpoint::Checkpoint::resolve(run).map_err(py_err)?;
        copy_dir(&newest, &path).map_err(py_err)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The resolved config (as the run directory records it).
    #[getter]
    fn config(&self) -> String {
        self.config.to_string()
    }

    fn __repr__(&self) -> String {
        let state = if self.trained.is_some() {
            "trained"
        } else {
            "untrained"
        };
        format!("offrl.Algorithm({:?}, {state})", self.name)
    }
}

/// A gymnasium environment object handed in from Python, as an offrl [`Env`]: evaluation runs
/// offrl's loop on the user's own environment (wrappers and all). Python errors inside it
/// come back as offrl's environment errors, with their text.
struct PyEnv {
    env: Py<PyAny>,
    id: String,
    observation_space: BoxSpace,
    action_space: BoxSpace,
    action_shape: Vec<usize>,
    max_episode_steps: Option<usize>,
}

impl PyEnv {
    fn new(py: Python<'_>, env: &Bound<'_, PyAny>) -> PyResult<Self> {
        let space = |name: &str| -> PyResult<(BoxSpace, Vec<usize>)> {
            let s = env.getattr(name)?;
            let (low, high) = (
                floats(py, &s.getattr("low")?)?,
                floats(py, &s.getattr("high")?)?,
            );
            let shape: Vec<usize> = s.getattr("shape")?.extract()?;
            Ok((BoxSpace::new(low, high), shape))
        };
        let (observation_space, _) = space("observation_space")?;
        let (action_space, action_shape) = space("action_space")?;
        let spec = env.getattr("spec").ok().filter(|s| !s.is_none());
        let id = match &spec {
            Some(s) => s.getattr("id")?.extract()?,
            None => env.get_type().name()?.to_string(),
        };
        let max_episode_steps = match &spec {
            Some(s) => s.getattr("max_episode_steps")?.extract()?,
            None => None,
        };
        Ok(Self {
            env: env.clone().unbind(),
            id,
            observation_space,
            action_space,
            action_shape,
            max_episode_steps,
        })
    }

    fn env_err(&self, e: PyErr) -> offrl::Error {
        offrl::Error::env(&self.id, e.to_string())
    }
}

impl Env for PyEnv {
    fn id(&self) -> &str {
        &self.id
    }

    fn observation_space(&self) -> &BoxSpace {
        &self.observation_space
    }

    fn action_space(&self) -> &BoxSpace {
        &self.action_space
    }

    fn max_episode_steps(&self) -> Option<usize> {
        self.max_episode_steps
    }

    fn reset(&mut self, seed: Option<u64>) -> offrl::Result<Vec<f32>> {
        Python::attach(|py| -> PyResult<Vec<f32>> {
            let kwargs = PyDict::new(py);
            kwargs.set_item("seed", seed)?;
            let out = self.env.bind(py).call_method("reset", (), Some(&kwargs))?;
            floats(py, &out.get_item(0)?)
        })
        .map_err(|e| self.env_err(e))
    }

    fn step(&mut self, action: &[f32]) -> offrl::Result<Step> {
        Python::attach(|py| -> PyResult<Step> {
            let a = PyArray1::from_slice(py, action).reshape(self.action_shape.clone())?;
            let out = self.env.bind(py).call_method1("step", (a,))?;
            Ok(Step {
                obs: floats(py, &out.get_item(0)?)?,
                reward: out.get_item(1)?.extract()?,
                terminated: out.get_item(2)?.extract()?,
                truncated: out.get_item(3)?.extract()?,
            })
        })
        .map_err(|e| self.env_err(e))
    }
}

/// Copy a checkpoint folder (flat: meta.json and the parts) to `to`, which must not exist.
fn copy_dir(from: &Path, to: &Path) -> offrl::Result<()> {
    if to.exists() {
        return Err(offrl::Error::Config(format!(
            "{} exists: save into a new folder",
            to.display()
        )));
    }
    std::fs::create_dir_all(to).map_err(|e| offrl::Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| offrl::Error::io(from, e))? {
        let entry = entry.map_err(|e| offrl::Error::io(from, e))?;
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).map_err(|e| offrl::Error::io(&target, e))?;
    }
    Ok(())
}

/// A trained model from a run directory (its newest checkpoint) or a checkpoint folder.
#[pyfunction]
fn load(path: PathBuf) -> PyResult<Algorithm> {
    let device = BackendKind::Flex.train_device().map_err(py_err)?;
    let algo = algos::load(&path, &device).map_err(py_err)?;
    Algorithm::from_trained(algo, None)
}

/// The whole method on `dataset`: the diffusion prior, the IQL critic, then RTB, with the
/// configs of `profile` (`quick`, `cpu`, `paper` or a profile TOML) and `sets`
/// (`ALGO.KEY=VALUE`, ALGO one of `diffusion-bc`, `iql`, `rtb`). Returns RTB (its `predict` is
/// the fine-tuned policy) and the logged lines of each stage, `{"diffusion-bc": [...], "iql":
/// [...], "rtb": [...]}`. With `logdir`, each stage trains into `logdir/<stage>` (resumable;
/// the models open with `offrl.load`); without, nothing is written.
#[pyfunction]
#[pyo3(signature = (dataset, profile="quick", sets=Vec::new(), seed=0, logdir=None))]
fn pipeline<'py>(
    py: Python<'py>,
    dataset: &Dataset,
    profile: &str,
    sets: Vec<String>,
    seed: u64,
    logdir: Option<PathBuf>,
) -> PyResult<(Algorithm, Bound<'py, PyDict>)> {
    let config = offrl::pipeline::PipelineConfig::from_profile(profile, &sets).map_err(py_err)?;
    let device = BackendKind::Flex.train_device().map_err(py_err)?;
    let trained = interruptible(py, || {
        offrl::pipeline::run(&dataset.inner, &config, seed, &device, logdir.as_deref())
    })?;
    let histories = PyDict::new(py);
    let stages = [
        ("diffusion-bc", &trained.history.prior),
        ("iql", &trained.history.critic),
        ("rtb", &trained.history.rtb),
    ];
    for (stage, history) in stages {
        histories.set_item(stage, history_lines(py, history)?)?;
    }
    let run_dir = logdir.map(|d| d.join("rtb"));
    let in_memory = run_dir.is_none();
    let mut rtb = Algorithm::from_trained(Box::new(trained.rtb), run_dir)?;
    rtb.config = config.rtb;
    rtb.seed = seed;
    if in_memory {
        rtb.unsaveable = Some(
            "RTB trained in memory cannot be saved: its checkpoints name the prior and critic \
             on disk; run the pipeline with logdir=...",
        );
    }
    Ok((rtb, histories))
}

/// A benchmark grid — `algos` (their inputs added) × the `suite`'s `datasets` (default: all) ×
/// `seeds` under `profile` with `sets` (`ALGO.KEY=VALUE`) — run in this process, cell after
/// cell, into `out` (the CLI's grid folder: `offrl bench report OUT` reads it too; running it
/// again recomputes no finished cell). Returns `{"table", "stats", "out", "manifest"}`: the
/// Markdown table and statistics, the folder and its manifest (whose lines any scheduler can
/// run with `offrl bench cell --manifest M --index I`).
#[pyfunction]
#[pyo3(signature = (algos, suite="pendulum", datasets=Vec::new(), seeds=vec![0], profile="quick", sets=Vec::new(), out=None))]
#[pyo3(name = "bench")]
#[allow(clippy::too_many_arguments)]
fn bench_grid<'py>(
    py: Python<'py>,
    algos: Vec<String>,
    suite: &str,
    datasets: Vec<String>,
    seeds: Vec<u64>,
    profile: &str,
    sets: Vec<String>,
    out: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    use offrl::bench::{cell, manifest::Resources, plan, report};
    let out = out.unwrap_or_else(|| format!("runs/bench-{suite}-{profile}").into());
    let datasets = plan::suite_datasets(suite, &datasets).map_err(py_err)?;
    let scale = cell::Profile::load(profile).map_err(py_err)?.scale;
    for d in &datasets {
        cell::prepare_dataset(d, scale, &out.join("data")).map_err(py_err)?;
    }
    let (manifest, path) = plan::plan(&plan::GridPlan {
        algos: &algos,
        datasets: &datasets,
        seeds: &seeds,
        profile,
        sets: &sets,
        backend: BackendKind::Flex,
        data_file: None,
        out: &out,
        resources: Resources {
            cpus: 1,
            gpus: 0,
            minutes: 0,
        },
    })
    .map_err(py_err)?;
    let cells = manifest.cells.len();
    interruptible(py, || {
        (0..cells).try_for_each(|i| plan::run_line(&path, i).map(|_| ()))
    })?;
    let grid = &manifest.header.out;
    let r = report::report(grid, Some(grid), &report::StatsConfig::default()).map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("table", r.table)?;
    d.set_item("stats", r.stats)?;
    d.set_item("out", grid)?;
    d.set_item("manifest", path)?;
    Ok(d)
}

/// The logged lines as a list of dicts (`step` and each metric).
fn history_lines<'py>(
    py: Python<'py>,
    history: &offrl::train::History,
) -> PyResult<Bound<'py, PyList>> {
    let lines = PyList::empty(py);
    for (step, metrics) in history {
        let line = PyDict::new(py);
        line.set_item("step", step)?;
        for (name, value) in metrics {
            line.set_item(name, value)?;
        }
        lines.append(line)?;
    }
    Ok(lines)
}

/// `(name, summary, needs)` of every algorithm.
#[pyfunction]
fn algorithms() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    algos::ALGORITHMS
        .iter()
        .map(|a| (a.name, a.summary, a.needs.to_vec()))
        .collect()
}

#[pymodule]
fn _offrl(m: &Bound<'_, PyModule>) -> PyResult<()> {
    offrl::backend::init_cpu_runtime();
    m.add_class::<Dataset>()?;
    m.add_class::<Algorithm>()?;
    m.add_function(wrap_pyfunction!(collect, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline, m)?)?;
    m.add_function(wrap_pyfunction!(bench_grid, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
