//! Peak memory and time of RTB updates at a benchmark shape, in a fresh process:
//! `cargo bench --bench rtb_memory -- paper 512 [REPEATS]` (shape `paper` | `cpu`, then
//! the chunk size in trajectories, 0 = the whole batch in one backward pass, then how many updates
//! of each kind to average over, default 1). Prints seconds per on- and off-policy update and the
//! process's peak resident memory (VmHWM).

mod support;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` appends `--bench`: flags are not ours.
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let name = args.get(1).map_or("paper", String::as_str);
    let chunk: usize = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(512);
    let repeats: usize = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(1);
    let shape = support::SHAPES
        .iter()
        .find(|s| s.name == name)
        .expect("shape: paper or cpu");
    let mut rtb = support::build(shape, chunk);
    let (obs, act) = support::batch(shape, 1);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let base = peak_rss_mib();
    let start = std::time::Instant::now();
    for _ in 0..repeats {
        rtb.on_policy_update(obs.clone(), &mut rng);
    }
    let on = start.elapsed().as_secs_f64() / repeats as f64;
    let start = std::time::Instant::now();
    for _ in 0..repeats {
        rtb.off_policy_update(obs.clone(), act.clone(), &mut rng);
    }
    let off = start.elapsed().as_secs_f64() / repeats as f64;
    println!(
        "{name} {}x{}xT{} chunk {chunk}: on-policy {on:.2} s, off-policy {off:.2} s, peak RSS {:.0} MiB (before the updates {base:.0} MiB)",
        shape.states,
        shape.k,
        shape.steps,
        peak_rss_mib()
    );
}
