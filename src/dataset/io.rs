//! Parquet files: one row per transition, D4RL column names, metadata as JSON under `offrl`.
//!
//! Columns (all non-nullable): `observations`, `next_observations` (FixedSizeList<Float32>,
//! obs_dim), `actions` (FixedSizeList<Float32>, act_dim), `rewards` (Float32), `terminals`,
//! `timeouts` (Boolean). Plain Parquet + an embedded Arrow schema: pyarrow (tested), pandas,
//! polars and DuckDB read the files unchanged.
//!
//! Writer settings, chosen for load speed (see `benches/dataset.rs` for the figures):
//! - no compression: observations of continuous-control tasks are high-entropy f32s; on the
//!   Hopper expert fixture snappy saves 4 %, zstd 10 % (byte-stream-split adds < 1 %), while
//!   decompressing costs more time than reading the raw bytes from the page cache;
//! - PLAIN encoding, no dictionary: dictionaries do not help continuous values, and PLAIN f32
//!   pages decode as a memory copy;
//! - row groups of [`ROW_GROUP_ROWS`] rows (~6.5 MB for Hopper): per-group overhead vanishes,
//!   while readers that buffer a whole row group (pyarrow, DuckDB) stay small; offrl's reader
//!   copies the float pages of its own files straight into the preallocated column buffers
//!   (the Arrow list reader, used for other writers' files, decodes per-value list levels at
//!   ~7× the cost), so a load peaks barely above the final buffers' size.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::{Dataset, Floats, Metadata, FORMAT_VERSION};
use crate::error::{Error, Result};

/// Key of the JSON metadata in the Parquet key-value metadata.
pub const METADATA_KEY: &str = "offrl";
/// Key of the content checksum ([`Dataset::fingerprint`]) in the Parquet key-value metadata:
/// [`load`] recomputes it, so an overwritten page or flipped bit is an error, not silent data.
/// Only in the Parquet footer, not the embedded Arrow schema: tools that rewrite the file through
/// Arrow (pyarrow, pandas) drop it with the old content rather than carry it to new content.
pub const FINGERPRINT_KEY: &str = "offrl.fingerprint";
/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per record batch of the Arrow reader (boolean columns; every column of other writers'
/// files): its transient buffers scale with it (a 1M-row Hopper load through it peaks at 1.12×
/// the raw columns at 16K rows, 1.36× at 64K) while its speed does not change measurably.
pub const READ_BATCH_ROWS: usize = 16 * 1024;

fn vector_field(name: &str, dim: usize) -> Field {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Field::new(name, DataType::FixedSizeList(item, dim as i32), false)
}

/// The Arrow schema of a dataset file with the given dims.
pub fn schema(obs_dim: usize, act_dim: usize) -> Schema {
    Schema::new(vec![
        vector_field("observations", obs_dim),
        vector_field("actions", act_dim),
        Field::new("rewards", DataType::Float32, false),
        vector_field("next_observations", obs_dim),
        Field::new("terminals", DataType::Boolean, false),
        Field::new("timeouts", DataType::Boolean, false),
    ])
}

fn writer_properties() -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
}

/// The dataset as Arrow record batches of at most `rows` rows (at least one batch), the schema
/// carrying its metadata under the `offrl` key (as the Parquet files do): what `save` writes,
/// and what the Python package hands to Arrow readers (`pyarrow.table(ds)`). Shared float
/// columns ([`Floats::share`]) are handed out as views of their buffers, owned ones copied.
pub fn record_batches(data: &Dataset, rows: usize) -> Vec<RecordBatch> {
    let meta_json = serde_json::to_string(&data.meta).expect("metadata serialises");
    // In the Arrow schema too: pyarrow takes schema metadata from the embedded Arrow schema
    // and ignores the Parquet key-value pairs when one is present.
    let schema = Arc::new(
        schema(data.obs_dim(), data.act_dim())
            .with_metadata([(METADATA_KEY.to_string(), meta_json)]),
    );
    let (od, ad) = (data.obs_dim(), data.act_dim());
    let floats = |values: &Floats, start: usize, end: usize| -> Arc<Float32Array> {
        Arc::new(Float32Array::new(values.arrow(start, end), None))
    };
    let vector = |values: &Floats, start: usize, end: usize, dim: usize| -> ArrayRef {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        Arc::new(FixedSizeListArray::new(
            item,
            dim as i32,
            floats(values, start * dim, end * dim),
            None,
        ))
    };
    let mut batches = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + rows.max(1)).min(data.len());
        batches.push(
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    vector(&data.observations, start, end, od),
                    vector(&data.actions, start, end, ad),
                    floats(&data.rewards, start, end),
                    vector(&data.next_observations, start, end, od),
                    Arc::new(BooleanArray::from(data.terminals[start..end].to_vec())),
                    Arc::new(BooleanArray::from(data.timeouts[start..end].to_vec())),
                ],
            )
            .expect("columns match the schema"),
        );
        start = end;
        if start >= data.len() {
            return batches;
        }
    }
}

/// Write `data` to `path` atomically: validate, write a temporary file in the target folder,
/// then rename it over `path`. On any error no file is left behind.
pub fn save(data: &Dataset, path: &Path) -> Result<()> {
    save_with(data, path, writer_properties())
}

fn save_with(
    data: &Dataset,
    path: &Path,
    props: parquet::file::properties::WriterPropertiesBuilder,
) -> Result<()> {
    data.validate()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let target = crate::output::Target::of(path)?;
    let tmp = target.temp_file(".offrl-", ".parquet.tmp")?;
    let file = tmp.reopen().map_err(|e| Error::io(tmp.path(), e))?;
    let fail = |e: parquet::errors::ParquetError| Error::format(path, format!("writing: {e}"));

    let meta_json = serde_json::to_string(&data.meta).expect("metadata serialises");
    let batches = record_batches(data, ROW_GROUP_ROWS);
    let mut writer = ArrowWriter::try_new(
        std::io::BufWriter::with_capacity(1 << 20, file),
        batches[0].schema(),
        Some(
            props
                .set_key_value_metadata(Some(vec![
                    KeyValue::new(METADATA_KEY.to_string(), meta_json),
                    KeyValue::new(FINGERPRINT_KEY.to_string(), data.fingerprint()),
                ]))
                .build(),
        ),
    )
    .map_err(fail)?;
    for batch in &batches {
        writer.write(batch).map_err(fail)?;
    }
    let buf = writer.into_inner().map_err(fail)?;
    let file = buf
        .into_inner()
        .map_err(|e| Error::io(tmp.path(), e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(tmp.path(), e))?;
    target.publish(tmp)
}

/// Read the `offrl` metadata of a dataset file without loading the columns.
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    let builder = open(path)?;
    metadata_of(path, &builder)
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::format(path, format!("not a readable Parquet file: {e}")))
}

/// The value of a key of the file's Parquet key-value metadata.
fn key_value<'a>(builder: &'a ParquetRecordBatchReaderBuilder<File>, key: &str) -> Option<&'a str> {
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == key))
        .and_then(|kv| kv.value.as_deref())
}

/// The content checksum a dataset file records ([`FINGERPRINT_KEY`]); `None` for files written
/// by other tools or before offrl recorded one (they load unverified).
pub fn recorded_fingerprint(path: &Path) -> Result<Option<String>> {
    Ok(key_value(&open(path)?, FINGERPRINT_KEY).map(str::to_string))
}

fn metadata_of(path: &Path, builder: &ParquetRecordBatchReaderBuilder<File>) -> Result<Metadata> {
    let json = key_value(builder, METADATA_KEY).ok_or_else(|| {
        Error::format(
            path,
            format!(
                "no `{METADATA_KEY}` key in the Parquet metadata: not an offrl dataset; a \
                 file with D4RL's column names imports with `offrl dataset import --format \
                 parquet {} --env ENV_ID -o OUT.parquet`",
                path.display()
            ),
        )
    })?;
    parse_metadata(path, json)
}

/// The `offrl` metadata of a file or an Arrow schema (`origin` names it in errors).
pub(crate) fn parse_metadata(path: &Path, json: &str) -> Result<Metadata> {
    let meta: Metadata = serde_json::from_str(json)
        .map_err(|e| Error::format(path, format!("`{METADATA_KEY}` metadata: {e}")))?;
    if meta.format_version > FORMAT_VERSION {
        return Err(Error::format(
            path,
            format!(
                "format version {} is newer than this offrl supports ({FORMAT_VERSION})",
                meta.format_version
            ),
        ));
    }
    Ok(meta)
}

/// Load a dataset file written by [`save`], checked with [`Dataset::validate`].
pub fn load(path: &Path) -> Result<Dataset> {
    let builder = open(path)?;
    let meta = metadata_of(path, &builder)?;
    let recorded = key_value(&builder, FINGERPRINT_KEY).map(str::to_string);
    let expected = schema(meta.obs_dim, meta.act_dim);
    let file_schema = builder.schema().clone();
    let mut columns = Vec::with_capacity(expected.fields().len());
    for field in expected.fields() {
        let (idx, found) = file_schema
            .column_with_name(field.name())
            .ok_or_else(|| Error::format(path, format!("missing column `{}`", field.name())))?;
        if !same_type(found.data_type(), field.data_type()) {
            return Err(Error::format(
                path,
                format!(
                    "column `{}` has type {}, expected {} (obs_dim {}, act_dim {} per metadata)",
                    field.name(),
                    found.data_type(),
                    field.data_type(),
                    meta.obs_dim,
                    meta.act_dim
                ),
            ));
        }
        columns.push(idx);
    }

    let n = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let (od, ad) = (meta.obs_dim, meta.act_dim);
    // Reserve the final sizes up front (no reallocation, no 2× peak), unless the footer claims
    // far more data than the file could plausibly hold (corrupt or crafted files).
    let file_len = std::fs::metadata(path).map_or(0, |m| m.len() as usize);
    let raw = n.saturating_mul(2 * od + ad + 1).saturating_mul(4);
    let cap = if raw <= file_len.saturating_mul(64) {
        n
    } else {
        0
    };
    let mut data = Dataset::with_capacity(meta, cap);
    // Float columns of offrl's own layout are copied page by page; anything else (dictionary
    // pages, nullable columns: other writers' files) goes through the Arrow reader.
    let floats_done = match read_floats_fast(path, n, &mut data) {
        Ok(true) => true,
        Ok(false) | Err(_) => {
            for v in [
                &mut data.observations,
                &mut data.actions,
                &mut data.rewards,
                &mut data.next_observations,
            ] {
                v.clear();
            }
            false
        }
    };
    let wanted: Vec<usize> = if floats_done {
        vec![4, 5]
    } else {
        (0..6).collect()
    };
    let roots = wanted.iter().map(|&k| columns[k]);
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| Error::format(path, format!("reading: {e}")))?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| {
            Error::format(
                path,
                format!("reading rows from {row}: {e} (truncated or corrupt file?)"),
            )
        })?;
        for &k in &wanted {
            let name = expected.field(k).name();
            let col = batch.column_by_name(name).expect("projected column");
            if null_count(col) > 0 {
                return Err(Error::format(
                    path,
                    format!(
                        "column `{name}` has null values in rows {row}..{}",
                        row + batch.num_rows()
                    ),
                ));
            }
            match k {
                0 => extend_vector(data.observations.make_mut(), col),
                1 => extend_vector(data.actions.make_mut(), col),
                2 => extend_f32(data.rewards.make_mut(), col),
                3 => extend_vector(data.next_observations.make_mut(), col),
                4 => extend_bool(&mut data.terminals, col),
                _ => extend_bool(&mut data.timeouts, col),
            }
        }
        row += batch.num_rows();
    }
    data.validate()
        .map_err(|e| Error::format(path, e.to_string()))?;
    if let Some(recorded) = recorded {
        let content = data.fingerprint();
        if content != recorded {
            return Err(Error::format(
                path,
                format!(
                    "the columns do not match the file's checksum (`{FINGERPRINT_KEY}` \
                     {recorded}, content {content}): the file is corrupted; restore a copy or \
                     build it again"
                ),
            ));
        }
    }
    Ok(data)
}

/// Copy the float columns of a file in offrl's own layout (uncompressed or compressed PLAIN
/// pages, no dictionary, non-nullable) straight from the pages into `data`, skipping the list
/// levels: for fixed-size lists of required floats every level is "present", so a page's
/// values section is exactly `num_values` f32s. Decoding the levels through the Arrow list
/// reader costs ~7× the copy. Returns `Ok(false)` at the first page not in that form.
fn read_floats_fast(path: &Path, rows: usize, data: &mut Dataset) -> parquet::errors::Result<bool> {
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let file = File::open(path).map_err(|e| parquet::errors::ParquetError::External(e.into()))?;
    let reader = SerializedFileReader::new(file)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let targets: [(&str, &mut Vec<f32>, usize); 4] = [
        (
            "observations",
            data.observations.make_mut(),
            data.meta.obs_dim,
        ),
        ("actions", data.actions.make_mut(), data.meta.act_dim),
        ("rewards", data.rewards.make_mut(), 1),
        (
            "next_observations",
            data.next_observations.make_mut(),
            data.meta.obs_dim,
        ),
    ];
    for (name, out, width) in targets {
        let leaves: Vec<usize> = (0..schema.num_columns())
            .filter(|&i| schema.get_column_root(i).name() == name)
            .collect();
        let [leaf] = leaves[..] else { return Ok(false) };
        let col = schema.column(leaf);
        // Lists of required floats have one repetition and one definition level, a required
        // float column none; anything else may hold nulls.
        let levels = col.max_rep_level();
        if col.physical_type() != parquet::basic::Type::FLOAT
            || levels > 1
            || col.max_def_level() != levels
        {
            return Ok(false);
        }
        let levels = levels as usize;
        for g in 0..reader.num_row_groups() {
            let mut pages = reader.get_row_group(g)?.get_column_page_reader(leaf)?;
            while let Some(page) = pages.get_next_page()? {
                let (buf, num_values, values_at) = match &page {
                    Page::DataPage {
                        buf,
                        num_values,
                        encoding: parquet::basic::Encoding::PLAIN,
                        def_level_encoding,
                        rep_level_encoding,
                        ..
                    } => {
                        // v1: [rep levels][def levels][values], each level run prefixed by its
                        // u32 byte length (RLE).
                        let mut at = 0usize;
                        for enc in [rep_level_encoding, def_level_encoding]
                            .iter()
                            .take(2 * levels)
                        {
                            if **enc != parquet::basic::Encoding::RLE || buf.len() < at + 4 {
                                return Ok(false);
                            }
                            let len =
                                u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
                            at += 4 + len as usize;
                        }
                        (buf, *num_values, at)
                    }
                    Page::DataPageV2 {
                        buf,
                        num_values,
                        encoding: parquet::basic::Encoding::PLAIN,
                        num_nulls: 0,
                        def_levels_byte_len,
                        rep_levels_byte_len,
                        ..
                    } => (
                        buf,
                        *num_values,
                        (*def_levels_byte_len + *rep_levels_byte_len) as usize,
                    ),
                    _ => return Ok(false),
                };
                let values = buf.get(values_at..).unwrap_or_default();
                if values.len() != num_values as usize * 4 {
                    return Ok(false);
                }
                out.extend(
                    values
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
                );
            }
        }
        if out.len() != rows * width {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Type equality up to the list item's name and nullability (pyarrow names it `element` and
/// marks it nullable; nulls are rejected when reading).
fn same_type(found: &DataType, want: &DataType) -> bool {
    match (found, want) {
        (DataType::FixedSizeList(f, n), DataType::FixedSizeList(w, m)) => {
            n == m && f.data_type() == w.data_type()
        }
        _ => found == want,
    }
}

/// Nulls in a column, including inside list items.
fn null_count(col: &ArrayRef) -> usize {
    match col.as_any().downcast_ref::<FixedSizeListArray>() {
        Some(list) => list.null_count() + list.values().null_count(),
        None => col.null_count(),
    }
}

// The downcasts below cannot fail: the column types were checked against the schema.
fn extend_f32(out: &mut Vec<f32>, col: &ArrayRef) {
    let a = col
        .as_any()
        .downcast_ref::<Float32Array>()
        .expect("Float32");
    out.extend_from_slice(a.values());
}

fn extend_vector(out: &mut Vec<f32>, col: &ArrayRef) {
    let list = col
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .expect("FixedSizeList");
    extend_f32(out, list.values());
}

fn extend_bool(out: &mut Vec<bool>, col: &ArrayRef) {
    let a = col
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("Boolean");
    out.extend(a.values().iter());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::tests::toy;

    #[test]
    fn save_then_load_is_exact() {
        let mut d = toy(
            &[1.5, -2.25, 3.0, 0.1],
            &[(false, false), (true, false), (false, false), (false, true)],
        );
        d.observations[3] = f32::MIN_POSITIVE;
        d.actions[2] = -0.0;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/toy.parquet");
        save(&d, &path).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.actions[2].to_bits(), (-0.0f32).to_bits());
        assert_eq!(read_metadata(&path).unwrap(), d.meta);
        // Only the file itself: the temporary file was renamed, not copied.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn many_row_groups_round_trip() {
        let n = ROW_GROUP_ROWS * 2 + 17;
        let rewards: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
        let ends: Vec<(bool, bool)> = (0..n).map(|i| (i % 1000 == 999, i % 777 == 0)).collect();
        let d = toy(&rewards, &ends);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.parquet");
        save(&d, &path).unwrap();
        assert_eq!(load(&path).unwrap(), d);
    }

    /// The page-copy fast path reads offrl's own layout under any codec and page version, and
    /// dictionary pages (other writers' default) fall back to the Arrow reader, equally exact.
    #[test]
    fn fast_path_and_fallback_agree() {
        use parquet::file::properties::WriterVersion;
        let n = 5000;
        let rewards: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.25).collect();
        let ends: Vec<(bool, bool)> = (0..n).map(|i| (i % 300 == 299, i % 1000 == 999)).collect();
        let d = toy(&rewards, &ends);
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("default", writer_properties(), true),
            (
                "zstd-v2",
                writer_properties()
                    .set_compression(Compression::ZSTD(Default::default()))
                    .set_writer_version(WriterVersion::PARQUET_2_0),
                true,
            ),
            (
                "snappy-small-pages",
                writer_properties()
                    .set_compression(Compression::SNAPPY)
                    .set_data_page_size_limit(1024),
                true,
            ),
            (
                "dictionary",
                writer_properties().set_dictionary_enabled(true),
                false,
            ),
        ];
        for (name, props, fast) in cases {
            let path = dir.path().join(format!("{name}.parquet"));
            save_with(&d, &path, props).unwrap();
            let mut probe = d.clone();
            for v in [
                &mut probe.observations,
                &mut probe.actions,
                &mut probe.rewards,
                &mut probe.next_observations,
            ] {
                v.clear();
            }
            assert_eq!(
                read_floats_fast(&path, n, &mut probe).unwrap(),
                fast,
                "{name}"
            );
            if fast {
                assert_eq!(probe.observations, d.observations, "{name}");
                assert_eq!(probe.rewards, d.rewards, "{name}");
            }
            assert_eq!(load(&path).unwrap(), d, "{name}");
        }
    }

    /// A page overwritten in place (footer intact, so the file still parses) is caught by the
    /// recorded checksum, naming the file; before checksums, such a file loaded as other data.
    #[test]
    fn overwritten_pages_are_detected() {
        let n = 3000;
        let rewards: Vec<f32> = (0..n).map(|i| (i % 17) as f32 * 0.5).collect();
        let ends: Vec<(bool, bool)> = (0..n).map(|i| (i % 500 == 499, false)).collect();
        let d = toy(&rewards, &ends);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.parquet");
        save(&d, &path).unwrap();
        assert_eq!(recorded_fingerprint(&path).unwrap(), Some(d.fingerprint()));
        let clean = std::fs::read(&path).unwrap();
        // Overwrite 64 bytes inside the reward column's values with other finite floats.
        let needle: Vec<u8> = rewards[100..116]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let at = clean
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .expect("the rewards are stored plainly");
        let mut bad = clean.clone();
        for (k, chunk) in bad[at..at + 64].chunks_mut(4).enumerate() {
            chunk.copy_from_slice(&(1000.0 + k as f32).to_le_bytes());
        }
        std::fs::write(&path, &bad).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("d.parquet") && err.contains("checksum") && err.contains("corrupted"),
            "{err}"
        );
    }

    #[test]
    fn invalid_data_is_not_written() {
        let mut d = toy(&[1.0, 2.0], &[(false, false); 2]);
        d.rewards[1] = f32::NAN;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        assert!(save(&d, &path).unwrap_err().to_string().contains("row 1"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
