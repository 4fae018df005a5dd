//! TensorBoard event files, written natively beside `metrics.jsonl` (which stays the source of
//! truth): `tensorboard --logdir runs/` shows every run directory under `runs/` by name, without
//! a converter and without TensorFlow.
//!
//! The file is a sequence of TFRecords — `u64` length, masked CRC-32C of the length, payload,
//! masked CRC-32C of the payload, little-endian — each holding one protobuf `Event`
//! (`tensorflow/core/util/event.proto`): first `file_version = "brain.Event:2"`, then one event
//! per logged step whose `Summary` has a `simple_value` per metric. Only those few fields are
//! encoded, by hand (a protobuf library would be a dependency for five tags).
//!
//! A run directory holds one event file. When a run resumes, its file is written again from
//! `metrics.jsonl` (cut back to the checkpoint, as the JSONL is), so the two always agree; the
//! replayed events carry the time of the replay, not of the first logging.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What every event file's name contains (TensorBoard's reader looks for it).
const MARKER: &str = "tfevents";

/// An open event file.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir`, replacing any event file there (a run directory keeps one).
    pub fn create(dir: &Path) -> Result<Self> {
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("events.out.") && name.contains(MARKER) {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        let now = wall_time();
        let path = dir.join(format!(
            "events.out.{MARKER}.{}.{}.offrl",
            now as u64,
            file_hostname()
        ));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut writer = Self {
            path,
            file: BufWriter::new(file),
        };
        let mut event = Vec::new();
        put_double(&mut event, 1, now);
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event at `step` with a scalar per metric (tags are the metric names).
    pub fn scalars(&mut self, step: usize, metrics: &[(&str, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for &(tag, value) in metrics {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_float(&mut v, 2, value as f32);
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_varint_field(&mut event, 2, step as u64);
        put_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn record(&mut self, payload: &[u8]) -> Result<()> {
        let len = (payload.len() as u64).to_le_bytes();
        let mut out = Vec::with_capacity(payload.len() + 16);
        out.extend_from_slice(&len);
        out.extend_from_slice(&masked_crc(&len).to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&masked_crc(payload).to_le_bytes());
        self.file
            .write_all(&out)
            .map_err(|e| Error::io(&self.path, e))
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name (`/etc/hostname`), if it has one.
pub(super) fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/etc/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

/// The machine's name as a file-name part (letters, digits and `-` only).
fn file_hostname() -> String {
    let name: String = hostname()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Wire types: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit.
fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u32, v: f32) {
    put_key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// The payloads of an event file's records, each checksum checked (for tests).
#[cfg(test)]
pub(crate) fn records(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(crc, masked_crc(len_bytes));
        let payload = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked_crc(payload));
        records.push(payload.to_vec());
        at += 16 + len;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C's check value ("123456789" → 0xE3069283) and TFRecord's masking of it.
    #[test]
    fn checksums_are_tfrecords() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    /// Records frame their payloads: each length and payload is followed by its checksum, and
    /// the file starts with the version event. (TensorBoard's own reader reads these files back
    /// in the Python package's tests.)
    #[test]
    fn records_are_framed_and_the_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(10, &[("loss", 0.5), ("eval/score", 42.0)])
            .unwrap();
        w.flush().unwrap();
        let records = records(w.path());
        assert_eq!(records.len(), 2);
        assert!(records[0].ends_with(b"brain.Event:2"));
        let tag = |t: &str| records[1].windows(t.len()).any(|w| w == t.as_bytes());
        assert!(tag("loss") && tag("eval/score"));
        assert!(records[1].windows(4).any(|w| w == 42.0f32.to_le_bytes()));
        // A second writer replaces the first file.
        let again = EventWriter::create(dir.path()).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        assert!(again.path().exists());
    }
}
