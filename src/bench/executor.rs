//! Executors beyond the local one: a grid's manifest ([`super::manifest`]) as Slurm job arrays
//! (one per dependency wave, each depending on the previous, then a report job) or as Ray tasks
//! (one per cell, through an embedded Python driver). Either runs `offrl bench cell --manifest M
//! --index I` per cell, so resume semantics are the grid's: resubmitting completes a grid
//! without recomputing its finished cells.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::manifest::Manifest;
use crate::error::{Error, Result};

/// What a Slurm submission asks for beyond each cell's resources.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// Array tasks running at once (`%K`); 0: no limit.
    pub max_parallel: usize,
    pub partition: Option<String>,
}

/// The job-array script of wave `wave`: one task per cell of the wave, task id = manifest index.
pub fn slurm_script(
    manifest: &Manifest,
    manifest_path: &Path,
    wave: usize,
    exe: &Path,
    opts: &SlurmOptions,
) -> String {
    let range = manifest.wave(wave);
    let first = &manifest.cells[range.start];
    let r = &first.resources;
    let out = &manifest.header.out;
    let limit = if opts.max_parallel > 0 {
        format!("%{}", opts.max_parallel)
    } else {
        String::new()
    };
    let mut s = format!(
        "#!/bin/bash\n\
         #SBATCH --job-name=offrl-wave{wave}\n\
         #SBATCH --array={}-{}{limit}\n\
         #SBATCH --ntasks=1\n\
         #SBATCH --cpus-per-task={}\n\
         #SBATCH --time={}\n\
         #SBATCH --chdir={}\n\
         #SBATCH --output={}/slurm/%x-%a.log\n",
        range.start,
        range.end - 1,
        r.cpus,
        r.minutes,
        out.display(),
        out.display(),
    );
    if r.gpus > 0 {
        s.push_str(&format!("#SBATCH --gres=gpu:{}\n", r.gpus));
    }
    if let Some(p) = &opts.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str(&format!(
        "# offrl grid {} — wave {wave}: cells {}..={} of {}\n\
         exec {} bench cell --manifest {} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        out.display(),
        range.start,
        range.end - 1,
        manifest.cells.len(),
        shell_quote(exe),
        shell_quote(manifest_path),
    ));
    s
}

/// The report job's script: `offrl bench report OUT` once every wave has ended.
pub fn report_script(manifest: &Manifest, exe: &Path) -> String {
    let out = &manifest.header.out;
    format!(
        "#!/bin/bash\n\
         #SBATCH --job-name=offrl-report\n\
         #SBATCH --ntasks=1\n\
         #SBATCH --cpus-per-task=1\n\
         #SBATCH --time=30\n\
         #SBATCH --chdir={}\n\
         #SBATCH --output={}/slurm/%x.log\n\
         exec {} bench report {}\n",
        out.display(),
        out.display(),
        shell_quote(exe),
        shell_quote(out),
    )
}

fn shell_quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The scripts of a submission in order (each wave's array, then the report) with their paths.
pub fn slurm_scripts(
    manifest: &Manifest,
    manifest_path: &Path,
    exe: &Path,
    opts: &SlurmOptions,
) -> Vec<(PathBuf, String)> {
    let dir = manifest.header.out.join("slurm");
    let mut scripts: Vec<(PathBuf, String)> = (0..manifest.header.waves)
        .filter(|&w| !manifest.wave(w).is_empty())
        .map(|w| {
            (
                dir.join(format!("wave{w}.sbatch")),
                slurm_script(manifest, manifest_path, w, exe, opts),
            )
        })
        .collect();
    scripts.push((dir.join("report.sbatch"), report_script(manifest, exe)));
    scripts
}

/// Write the scripts and submit them with `sbatch`, each after the previous one has ended
/// (`--dependency=afterany`: a failed cell fails its dependents with a clear error instead of
/// cancelling them unseen); returns the job ids in order.
pub fn slurm_submit(scripts: &[(PathBuf, String)]) -> Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    for (path, text) in scripts {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        crate::output::write_atomic(path, text.as_bytes())?;
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable");
        if let Some(prev) = ids.last() {
            cmd.arg(format!("--dependency=afterany:{prev}"));
        }
        cmd.arg(path);
        let id = run_tool(&mut cmd, "sbatch")?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = id.split(';').next().unwrap_or_default().trim().to_string();
        if id.is_empty() {
            return Err(Error::Config(format!(
                "sbatch {} printed no job id",
                path.display()
            )));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Wait until none of `ids` is queued or running any more (polling `squeue` every `poll`).
pub fn slurm_wait(ids: &[String], poll: std::time::Duration) -> Result<()> {
    loop {
        let mut cmd = Command::new("squeue");
        cmd.args(["--noheader", "--format=%i", "--jobs", &ids.join(",")]);
        let out = match run_tool(&mut cmd, "squeue") {
            Ok(out) => out,
            // squeue refuses ids it no longer knows: then they have all ended.
            Err(e) if e.to_string().contains("Invalid job id") => String::new(),
            Err(e) => return Err(e),
        };
        if out.trim().is_empty() {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}

/// Run the Ray driver on the manifest against the cluster at `address` with `python`.
pub fn ray_run(python: &Path, manifest_path: &Path, exe: &Path, address: &str) -> Result<()> {
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(include_str!("ray_driver.py"))
        .arg(manifest_path)
        .arg(exe)
        .arg(address);
    run_tool(&mut cmd, "the Ray driver").map(|_| ())
}

/// Run a scheduler's command: its stdout, or one error line naming what was tried and the
/// command's own last words.
fn run_tool(cmd: &mut Command, what: &str) -> Result<String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .filter(|a| a.len() < 200)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd.output().map_err(|e| {
        Error::Config(format!(
            "{what}: could not start `{shown}`: {e} (is it installed and on PATH?)"
        ))
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim();
    Err(Error::Config(format!(
        "{what} failed ({}) running `{shown}`: {last}",
        out.status
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::manifest::{CellLine, Header, Resources, VERSION};

    #[test]
    fn one_array_per_wave_then_a_report() {
        let cell = |index, wave| CellLine {
            index,
            wave,
            algo: "bc".into(),
            dataset: "pendulum/medium".into(),
            seed: index as u64,
            dir: "/g/cells/x".into(),
            resources: Resources {
                cpus: 2,
                gpus: 1,
                minutes: 90,
            },
        };
        let m = Manifest {
            header: Header {
                offrl_manifest: VERSION,
                out: "/g rid".into(),
                profile: "quick".into(),
                backend: "flex".into(),
                sets: vec![],
                data_file: None,
                cells: 4,
                waves: 2,
                commit: "x".into(),
            },
            cells: vec![cell(0, 0), cell(1, 0), cell(2, 0), cell(3, 1)],
        };
        let opts = SlurmOptions {
            max_parallel: 2,
            partition: Some("cpu".into()),
        };
        let scripts = slurm_scripts(
            &m,
            Path::new("/g rid/manifest.jsonl"),
            Path::new("/bin/offrl"),
            &opts,
        );
        assert_eq!(scripts.len(), 3);
        let (w0, w1, rep) = (&scripts[0].1, &scripts[1].1, &scripts[2].1);
        for want in [
            "--array=0-2%2",
            "--cpus-per-task=2",
            "--time=90",
            "--gres=gpu:1",
            "--partition=cpu",
        ] {
            assert!(w0.contains(want), "{want}:\n{w0}");
        }
        assert!(
            w0.contains("--manifest '/g rid/manifest.jsonl' --index \"$SLURM_ARRAY_TASK_ID\""),
            "{w0}"
        );
        assert!(w1.contains("--array=3-3%2"), "{w1}");
        assert!(rep.contains("bench report '/g rid'"), "{rep}");
    }

    #[test]
    fn a_missing_scheduler_is_one_clear_line() {
        let err = run_tool(&mut Command::new("offrl-no-such-sbatch"), "sbatch")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("offrl-no-such-sbatch") && err.contains("could not start"),
            "{err}"
        );
        let err = run_tool(Command::new("sh").args(["-c", "echo 'sbatch: error: Batch job submission failed: Unable to contact slurm controller' >&2; exit 1"]), "sbatch")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Unable to contact slurm controller") && err.contains("sbatch failed"),
            "{err}"
        );
    }
}
