#[path = "../benches/support/mod.rs"]
mod support;
use burn::module::Module;
use offrl::algos::rtb::*;
use std::time::Instant;
fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let shape = &support::SHAPES[0];
    let rtb = support::build(shape, 512);
    let (obs, _act) = support::batch(shape, 1);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let correction = rtb.model.correction.valid();
    let fused = offrl::diffusion::fused::FusedEpsNet::new(&correction.net, &rtb.prior.schedule);
    let pi = Posterior {
        fused: Some(&fused),
        ..rtb.posterior(&correction)
    };
    let ro = rollout_on_policy(&pi, obs.clone(), 64, &mut rng);
    let x = ro.xs[10].clone();
    let o = ro.obs.clone();
    for _ in 0..3 {
        let t = Instant::now();
        match what.as_str() {
            "reward" => {
                for _ in 0..75 {
                    let _ = rtb.reward.gradient(o.clone(), x.clone());
                }
            }
            "eps" => {
                for j in 0..75 {
                    let _ = offrl::diffusion::EpsModel::eps(&fused, o.clone(), x.clone(), 75 - j);
                }
            }
            _ => {
                rtb_gradients(&rtb.prior.schedule, &rtb.model, &ro, 512);
            }
        }
        println!("{what}: {:.2} s", t.elapsed().as_secs_f64());
    }
}
