//! A file offrl wrote opens unchanged in pyarrow, with the same values bit for bit.

mod common;

use common::*;
use offrl::dataset::{io, DatasetBuilder, Metadata, ReferenceScores, FORMAT_VERSION};

const READ: &str = r#"
import json, sys
import numpy as np, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
out = {"schema": {f.name: str(f.type) for f in t.schema}, "rows": t.num_rows,
       "meta": json.loads(t.schema.metadata[b"offrl"])}
for name in t.column_names:
    col = t.column(name).combine_chunks()
    if name in ("terminals", "timeouts"):
        out[name] = col.to_pylist()
    else:
        if hasattr(col, "flatten"):
            col = col.flatten()
        out[name] = col.to_numpy(zero_copy_only=False).view(np.uint32).tolist()
print(json.dumps(out))
"#;

#[test]
fn pyarrow_reads_what_offrl_wrote() {
    let Some(py) = python() else { return };
    // Values that catch lossy paths: -0.0, subnormals, extremes, non-round decimals.
    let specials = [
        -0.0f32,
        f32::MIN_POSITIVE / 8.0,
        f32::MAX,
        f32::MIN,
        0.1,
        -3.75,
        1e-30,
    ];
    let (od, ad) = (5, 2);
    let n = 3000; // more than one page per column
    let mut b = DatasetBuilder::with_capacity(od, ad, n);
    let v = |i: usize, k: usize| specials[(i * 7 + k) % specials.len()] + (i % 5) as f32 * 0.0;
    for i in 0..n {
        let obs: Vec<f32> = (0..od).map(|k| v(i, k)).collect();
        let next: Vec<f32> = (0..od).map(|k| v(i + 1, k) * 0.5).collect();
        let act: Vec<f32> = (0..ad).map(|k| v(i, k + 3)).collect();
        b.push(
            &obs,
            &act,
            i as f32 * 0.001,
            &next,
            i % 997 == 996,
            i % 1000 == 999,
        )
        .unwrap();
    }
    let meta = Metadata {
        format_version: FORMAT_VERSION,
        env_id: "Toy-v0".into(),
        obs_dim: od,
        act_dim: ad,
        action_low: vec![-1.0, -2.0],
        action_high: vec![1.0, 2.0],
        source: serde_json::json!({"importer": "test", "note": "ünïcode"}),
        reference_scores: Some(ReferenceScores {
            random: -1.5,
            expert: 2.25,
        }),
    };
    let data = b.finish(meta).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("toy.parquet");
    io::save(&data, &file).unwrap();

    let json: serde_json::Value =
        serde_json::from_str(&run_python(&py, READ, &[file.to_str().unwrap()])).unwrap();
    assert_eq!(json["rows"], n);
    let schema = &json["schema"];
    assert_eq!(
        schema["observations"],
        "fixed_size_list<item: float not null>[5]"
    );
    assert_eq!(
        schema["actions"],
        "fixed_size_list<item: float not null>[2]"
    );
    assert_eq!(schema["rewards"], "float");
    assert_eq!(schema["terminals"], "bool");
    let meta: Metadata = serde_json::from_value(json["meta"].clone()).unwrap();
    assert_eq!(meta, data.meta);
    let bits = |name: &str| -> Vec<f32> {
        serde_json::from_value::<Vec<u32>>(json[name].clone())
            .unwrap()
            .into_iter()
            .map(f32::from_bits)
            .collect()
    };
    assert_bits_eq("observations", &bits("observations"), &data.observations);
    assert_bits_eq("actions", &bits("actions"), &data.actions);
    assert_bits_eq("rewards", &bits("rewards"), &data.rewards);
    assert_bits_eq(
        "next_observations",
        &bits("next_observations"),
        &data.next_observations,
    );
    let bools = |name: &str| serde_json::from_value::<Vec<bool>>(json[name].clone()).unwrap();
    assert_eq!(bools("terminals"), data.terminals);
    assert_eq!(bools("timeouts"), data.timeouts);
}
