//! Behaviour-policy cards reproduce the returns their authors measured (gymnasium 1.4, MuJoCo
//! v5, deterministic, reset seeds 0..4) when run through the Rust forward pass and the bridge.
#![cfg(feature = "python")]

use offrl::config::shared_dir;
use offrl::envs;
use offrl::eval::evaluate;
use offrl::policy::{Policy, PolicyCard};

fn cards_present() -> bool {
    let dir = shared_dir().join("behavior-policies");
    if !dir.is_dir() {
        println!("skipped: {} is absent (set OFFRL_SHARED)", dir.display());
        return false;
    }
    true
}

fn check_measured_return(name: &str) {
    let mut card = PolicyCard::load(name).unwrap();
    let measured = card
        .spec
        .measured
        .clone()
        .expect("card has measured returns");
    let want = measured["deterministic_return"]["mean"].as_f64().unwrap();
    let episodes = measured["episodes"].as_u64().unwrap() as usize;
    let env_id = card.env_id();
    let report = evaluate(
        &mut card,
        || envs::make(&env_id),
        episodes,
        episodes,
        0,
        None,
    )
    .unwrap();
    println!("{name} on {env_id}: {report} (card: {want})");
    assert!(
        (report.mean - want).abs() <= 0.02 * want.abs(),
        "{name}: measured {} vs card {want}",
        report.mean
    );
}

#[test]
fn hopper_trpo_reproduces_its_measured_return() {
    // Constant log-std, observation normalisation, clip squash.
    if cards_present() {
        check_measured_return("hopper-trpo");
    }
}

#[test]
fn hopper_sac_reproduces_its_measured_return() {
    // Log-std head, no normalisation, tanh squash, 256-wide layers.
    if cards_present() {
        check_measured_return("hopper-sac");
    }
}

#[test]
fn stochastic_cards_are_seeded_and_bad_cards_are_named() {
    if !cards_present() {
        return;
    }
    let mut env = envs::make("Hopper-v5").unwrap();
    let obs = env.reset(Some(0)).unwrap();
    let batch: Vec<f32> = obs.iter().cycle().take(obs.len() * 64).copied().collect();
    let mut det = PolicyCard::load("hopper-trpo").unwrap();
    let a_det = det.act(&batch, 64).unwrap();
    assert!(
        a_det.chunks(3).all(|a| a == &a_det[..3]),
        "deterministic rows differ"
    );
    let sample = |seed| {
        PolicyCard::load("hopper-trpo")
            .unwrap()
            .stochastic(seed)
            .unwrap()
            .act(&batch, 64)
            .unwrap()
    };
    let (s1, s2, s3) = (sample(1), sample(1), sample(2));
    assert_eq!(s1, s2);
    assert_ne!(s1, s3);
    assert_ne!(s1, a_det);
    assert!(s1.iter().all(|a| (-1.0..=1.0).contains(a)));

    let err = PolicyCard::load("no-such-card").unwrap_err().to_string();
    assert!(err.contains("no policy card `no-such-card`"), "{err}");
    let err = det.act(&[0.0; 5], 1).unwrap_err().to_string();
    assert!(
        err.contains("hopper-trpo") && err.contains("dimension 11"),
        "{err}"
    );
    // A card for another body is refused for this environment.
    let err = offrl::policy::by_name("halfcheetah-ppo", env.as_ref(), false, 0.0, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("halfcheetah-ppo") && err.contains("Hopper-v5"),
        "{err}"
    );
}
