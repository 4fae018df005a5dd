use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ensure_finite;
use super::tensorboard::{hostname, EventWriter};
use crate::error::{Error, Result};

/// Exclusive use of a run directory for a process's lifetime (an advisory `flock` on
/// `ROOT/.lock`, released when dropped or when the process dies): two trainings into one folder
/// would interleave checkpoints and metrics of different runs.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Lock `root` (created if missing), or fail at once naming the process that holds it.
    pub fn acquire(root: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let path = root.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if !try_lock(&file) {
            let mut holder = String::new();
            let _ = std::io::Read::read_to_string(&mut file, &mut holder);
            return Err(Error::Config(format!(
                "{} is in use by another offrl process ({}): wait for it to finish, or use \
                 another output folder",
                root.display(),
                holder.trim().trim_end_matches('.')
            )));
        }
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        let host = hostname().unwrap_or_else(|| "this machine".into());
        let me = format!("pid {} on {host}", std::process::id());
        file.write_all(me.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        Ok(RunLock { _file: file })
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this File owns; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_: &File) -> bool {
    true
}

/// A training run's folder:
/// `config.json` (the resolved config), `metrics.jsonl` (one object per logged step),
/// `events.out.tfevents.*` (the same lines for TensorBoard), `plots/*.png`, `checkpoints/`.
pub struct RunDir {
    root: PathBuf,
    metrics: BufWriter<File>,
    events: EventWriter,
}

impl RunDir {
    /// Create (or reopen, to resume) a run directory and write the resolved config.
    /// When resuming, metrics lines past `resume_step` are dropped so that the resumed run
    /// does not log the same steps twice.
    pub fn open(
        root: impl Into<PathBuf>,
        config: &impl Serialize,
        resume_step: Option<usize>,
    ) -> Result<Self> {
        let root = root.into();
        for dir in [root.clone(), root.join("plots"), root.join("checkpoints")] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let config_json = serde_json::to_string_pretty(config)
            .map_err(|e| Error::Config(format!("cannot serialise config: {e}")))?;
        crate::output::write_atomic(&root.join("config.json"), config_json.as_bytes())?;
        let metrics_path = root.join("metrics.jsonl");
        match resume_step {
            Some(step) if metrics_path.exists() => truncate_metrics_after(&metrics_path, step)?,
            _ => {
                File::create(&metrics_path).map_err(|e| Error::io(&metrics_path, e))?;
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&metrics_path)
            .map_err(|e| Error::io(&metrics_path, e))?;
        // The event file follows the JSONL: written again from what the JSONL kept.
        let mut events = EventWriter::create(&root)?;
        for (step, metrics) in read_lines(&metrics_path)? {
            let metrics: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            events.scalars(step, &metrics)?;
        }
        events.flush()?;
        Ok(Self {
            root,
            metrics: BufWriter::new(file),
            events,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// `plots/`: the metrics' curves and the algorithm's own figures.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }

    /// Append one metrics line. A non-finite value stops training with an error naming it.
    pub fn log(&mut self, step: usize, metrics: &[(&str, f64)]) -> Result<()> {
        let mut obj = serde_json::Map::new();
        obj.insert("step".into(), step.into());
        for &(name, value) in metrics {
            ensure_finite(step, name, value)?;
            obj.insert(name.into(), value.into());
        }
        let path = self.root.join("metrics.jsonl");
        serde_json::to_writer(&mut self.metrics, &obj)
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        self.metrics
            .write_all(b"\n")
            .and_then(|_| self.metrics.flush())
            .map_err(|e| Error::io(&path, e))?;
        self.events.scalars(step, metrics)?;
        self.events.flush()
    }

    /// Render one PNG per metric from `metrics.jsonl` into `plots/`.
    pub fn plot(&mut self) -> Result<()> {
        self.metrics
            .flush()
            .map_err(|e| Error::io(self.root.join("metrics.jsonl"), e))?;
        let series = read_metrics(&self.root.join("metrics.jsonl"))?;
        for (name, points) in &series {
            let file = self.plots().join(format!("{}.png", name.replace('/', "_")));
            super::plot::line_chart(&file, name, "step", &[(name.as_str(), points.as_slice())])?;
        }
        Ok(())
    }
}

/// One metric's `(step, value)` points, by name.
pub type Series = (String, Vec<(f64, f64)>);

/// Metrics of a JSONL file, names in first-seen order.
pub fn read_metrics(path: &Path) -> Result<Vec<Series>> {
    let mut series: Vec<Series> = Vec::new();
    for (step, metrics) in read_lines(path)? {
        for (k, v) in metrics {
            match series.iter_mut().find(|(name, _)| *name == k) {
                Some((_, pts)) => pts.push((step as f64, v)),
                None => series.push((k, vec![(step as f64, v)])),
            }
        }
    }
    Ok(series)
}

/// One line of a metrics JSONL file: its step and its numeric values.
type Line = (usize, Vec<(String, f64)>);

/// The lines of a metrics JSONL file: each one's step (its line number when it has none) and
/// its numeric values, in the file's order.
fn read_lines(path: &Path) -> Result<Vec<Line>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = Vec::new();
    for (lineno, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
            .map_err(|e| Error::format(path, format!("line {}: {e}", lineno + 1)))?;
        let step = obj
            .get("step")
            .and_then(|v| v.as_u64())
            .map_or(lineno, |s| s as usize);
        let values = obj
            .iter()
            .filter(|(k, _)| *k != "step")
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .collect();
        lines.push((step, values));
    }
    Ok(lines)
}

fn truncate_metrics_after(path: &Path, step: usize) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s as usize <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    crate::output::write_atomic(path, kept.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TensorBoard file follows `metrics.jsonl`: one event per logged line, and a resumed run
    /// writes it again from the lines the JSONL kept (no step twice).
    #[test]
    fn event_file_follows_the_metrics_through_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let events = |dir: &Path| {
            let files: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().contains("tfevents"))
                .collect();
            assert_eq!(files.len(), 1, "{files:?}");
            super::super::tensorboard::records(&files[0]).len() - 1 // minus the version record
        };
        let mut run = RunDir::open(dir.path(), &"cfg", None).unwrap();
        for step in 1..=3 {
            run.log(step, &[("loss", step as f64)]).unwrap();
        }
        assert_eq!(events(dir.path()), 3);
        drop(run);
        let mut run = RunDir::open(dir.path(), &"cfg", Some(2)).unwrap();
        assert_eq!(events(dir.path()), 2);
        run.log(3, &[("loss", 0.5)]).unwrap();
        assert_eq!(events(dir.path()), 3);
        assert_eq!(
            read_metrics(&dir.path().join("metrics.jsonl")).unwrap()[0]
                .1
                .len(),
            3
        );
    }

    /// A second holder fails at once naming the first; the lock goes with its holder.
    #[test]
    fn a_run_directory_has_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        let first = RunLock::acquire(&root).unwrap();
        let err = RunLock::acquire(&root).unwrap_err().to_string();
        let me = format!("pid {}", std::process::id());
        assert!(
            err.contains("in use by another offrl process") && err.contains(&me),
            "{err}"
        );
        drop(first);
        RunLock::acquire(&root).unwrap();
    }
}
