//! The library without the CLI: collect a dataset, train BC into a run directory, load it back
//! and act — then time `act` for one observation and for a batch of 256 (the native side of the
//! Python package's `predict` overhead, benches/RESULTS.md).
//!
//! `cargo run --release --example train_and_predict`

use std::time::Instant;

use offrl::algos::{self, AlgoKind};
use offrl::dataset::{collect::collect, registry::CollectPart};

fn main() -> offrl::Result<()> {
    offrl::backend::init_cpu_runtime();
    let part = CollectPart {
        policy: "pendulum-swingup".into(),
        steps: 2000,
        stochastic: false,
        noise: 0.5,
    };
    let data = collect("Pendulum-v1", &[part], 0, 1.0, None, false)?;
    let device = offrl::backend::BackendKind::Flex.train_device()?;
    let config = offrl::config::resolve(
        &AlgoKind::Bc.default_config(),
        None,
        &["train.steps=10".into()],
    )?;
    let run = tempfile::tempdir().map_err(|e| offrl::Error::io("tempdir", e))?;
    algos::train(
        AlgoKind::Bc,
        &config,
        &data,
        Some(run.path()),
        0,
        &device,
        None,
    )?;
    // What `offrl eval` and `offrl.load` do: rebuild from the newest checkpoint.
    let mut policy = algos::load(run.path(), &device)?.policy()?;
    for (name, n, reps) in [("one", 1, 20_000), ("batch256", 256, 2_000)] {
        let obs = &data.observations[..n * data.obs_dim()];
        policy.act(obs, n)?;
        let best = (0..3)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..reps {
                    policy.act(obs, n).expect("act");
                }
                start.elapsed().as_secs_f64() / reps as f64 * 1e6
            })
            .fold(f64::INFINITY, f64::min);
        println!("{name}: {best:.2} us per act");
    }
    Ok(())
}
