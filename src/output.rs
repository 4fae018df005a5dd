//! Writing an output file without clobbering what it should not: a regular file (or a path
//! that does not exist yet) is replaced atomically — a temporary file beside it, renamed over
//! it once complete, so a reader never sees half a file and a failed write leaves the old one;
//! a symlink to a regular file has its target replaced and stays a link; anything else (a
//! device such as `/dev/null`, a FIFO, `/dev/stdout`) is written through, never replaced; a
//! directory is an error. New files get the permissions of any new file (0666 minus the umask),
//! not the 0600 of a private temporary file.
//!
//! Temporary names carry the host and process id (`.offrl-HOST-PID-…`): a process killed
//! mid-write (SIGKILL, Ctrl-C) cannot remove its file, so the next write into the same folder
//! removes those of processes of this host that are gone ([`sweep_stale`]). Files of other hosts
//! (a folder shared over NFS) and of live processes are left alone.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// How an output path is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Atomically replace (or create) this regular file (symlinks resolved).
    Replace(PathBuf),
    /// Write through to this special file (device, FIFO, socket), never replacing it.
    WriteThrough(PathBuf),
}

impl Target {
    /// How `path` is to be written.
    pub fn of(path: &Path) -> Result<Target> {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => Err(Error::io(
                path,
                io::Error::other("is a directory, not a file to write"),
            )),
            Ok(m) if m.is_file() => {
                let file = fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
                Ok(Target::Replace(file))
            }
            Ok(_) => Ok(Target::WriteThrough(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok(Target::Replace(path.to_path_buf()))
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// A temporary file for the content: beside a replaced file (so the rename stays on one
    /// file system), in the system's temporary folder for a write-through target. Removed when
    /// dropped unpublished.
    pub fn temp_file(&self, prefix: &str, suffix: &str) -> Result<NamedTempFile> {
        let dir = match self {
            Target::Replace(file) => match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            Target::WriteThrough(_) => std::env::temp_dir(),
        };
        sweep_stale(&dir, prefix);
        let mut builder = tempfile::Builder::new();
        let prefix = temp_prefix(prefix);
        builder.prefix(&prefix).suffix(suffix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The mode given to open(2): the umask applies, as for any new file.
            builder.permissions(fs::Permissions::from_mode(0o666));
        }
        builder.tempfile_in(&dir).map_err(|e| Error::io(&dir, e))
    }

    /// Put the complete temporary file in place.
    pub fn publish(&self, tmp: NamedTempFile) -> Result<()> {
        match self {
            Target::Replace(file) => tmp
                .persist(file)
                .map(|_| ())
                .map_err(|e| Error::io(file, e.error)),
            Target::WriteThrough(path) => {
                let mut from = tmp.reopen().map_err(|e| Error::io(tmp.path(), e))?;
                let mut to = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                io::copy(&mut from, &mut to).map_err(|e| Error::io(path, e))?;
                to.flush().map_err(|e| Error::io(path, e))
            }
        }
    }
}

/// `prefix` followed by this host and process: what [`sweep_stale`] recognises.
pub fn temp_prefix(prefix: &str) -> String {
    format!("{prefix}{}-{}-", host_name(), std::process::id())
}

/// Remove the entries of `dir` named by [`temp_prefix`]`(prefix)` for a process of this host
/// that no longer runs: what a killed writer left behind. Best effort: a failure to list or to
/// remove leaves things as they were.
pub fn sweep_stale(dir: &Path, prefix: &str) {
    let ours = format!("{prefix}{}-", host_name());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&ours))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_is_alive(pid) {
            let path = entry.path();
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

#[cfg(unix)]
fn process_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // Signal 0 checks existence only; EPERM means it exists under another user.
    // SAFETY: kill(2) with signal 0 sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_is_alive(_pid: u32) -> bool {
    true // no cheap check: never remove
}

/// This machine's name, with `-` and path separators replaced so that names parse back.
fn host_name() -> String {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    name.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Write `bytes` to `path` as the module docs say.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = Target::of(path)?;
    if let Target::WriteThrough(p) = &target {
        let mut to = OpenOptions::new()
            .write(true)
            .open(p)
            .map_err(|e| Error::io(p, e))?;
        return to.write_all(bytes).map_err(|e| Error::io(p, e));
    }
    let mut tmp = target.temp_file(".offrl-", ".tmp")?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    target.publish(tmp)
}

/// Refuse to write an output over one of the command's inputs.
pub fn ensure_not_input(output: &Path, input: &Path) -> Result<()> {
    let same = match (fs::canonicalize(output), fs::canonicalize(input)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::Config(format!(
            "the output {} is the input file: write to another path",
            output.display()
        )));
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// What a writer killed mid-write left (a temporary file of a process that is gone) is
    /// removed by the next write into the folder; a live process's file and others' are kept.
    #[test]
    fn temporary_files_of_killed_writers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let host = host_name();
        let stale = dir
            .path()
            .join(format!(".offrl-{host}-{gone}-aB3x.parquet.tmp"));
        let live = dir
            .path()
            .join(format!("{}live.tmp", temp_prefix(".offrl-")));
        let other_host = dir.path().join(format!(".offrl-otherhost-{gone}-aB3x.tmp"));
        let unrelated = dir.path().join(".offrl-notes.txt");
        for f in [&stale, &live, &other_host, &unrelated] {
            fs::write(f, vec![0u8; 1 << 16]).unwrap();
        }
        write_atomic(&dir.path().join("out.json"), b"{}").unwrap();
        assert!(!stale.exists(), "the dead writer's file stayed");
        for f in [&live, &other_host, &unrelated] {
            assert!(f.exists(), "{} was removed", f.display());
        }
    }
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn regular_files_are_replaced_with_ordinary_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        fs::write(&plain, b"").unwrap(); // what the umask gives any new file
        let out = dir.path().join("out.json");
        write_atomic(&out, b"one").unwrap();
        write_atomic(&out, b"two").unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"two");
        assert_eq!(mode(&out), mode(&plain));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary left"
        );
    }

    #[test]
    fn a_symlink_keeps_pointing_at_its_replaced_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn devices_are_written_through_and_directories_refused() {
        write_atomic(Path::new("/dev/null"), b"discarded").unwrap();
        let null = fs::metadata("/dev/null").unwrap();
        assert!(null.file_type().is_char_device(), "/dev/null was replaced");
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x").unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }

    #[test]
    fn an_output_equal_to_the_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.parquet");
        fs::write(&input, b"data").unwrap();
        let same = dir.path().join(".").join("in.parquet");
        let err = ensure_not_input(&same, &input).unwrap_err().to_string();
        assert!(err.contains("is the input file"), "{err}");
        ensure_not_input(&dir.path().join("out.parquet"), &input).unwrap();
    }
}
