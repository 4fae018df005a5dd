//! The inference cost of one action for 10 states (one evaluation step of 10 environments) of
//! each policy built on the behaviour models, at Hopper dims (obs 11, act 3), through
//! `Policy::act` (what evaluation calls): the diffusion prior (T = 75, the paper's chain; T = 20,
//! the cpu profile's) and RTB on it (correction network and the Langevin term's ∇_a Q at every
//! step), flow-BC (10 Euler steps), and the outsourced noise-space sampler (a 25-step chain over
//! z, then the map: flow-BC's, or the DDIM map of the T = 20 prior) with and without its
//! Langevin term; FQL's one-step policy and IQL's Gaussian actor (one network call each) for
//! scale. Untrained networks at the configured shapes: the cost does not depend on the
//! weights. Issue 21's target: a noise-space policy acts no slower than the T = 75 RTB policy.
//! `cargo bench --bench acting`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use offrl::algos::common::NetConfig;
use offrl::algos::flow_bc::{FlowMap, MapPolicy, VelocityField};
use offrl::algos::fql::{Fql, FqlConfig};
use offrl::algos::iql::{Iql, IqlConfig};
use offrl::algos::outsourced::{BehaviorMap, MapReward, OutsourcedConfig, OutsourcedPolicy};
use offrl::algos::rtb::{Rtb, RtbConfig, RtbPolicy};
use offrl::diffusion::{
    Ddim, DdimMap, DiffusionPolicy, DiffusionPrior, EpsNetConfig, NoiseSchedule, PriorSpec,
    ScheduleConfig, StandardNormal,
};
use offrl::nn::Activation;
use offrl::policy::Policy;
use offrl::train::OfflineAlgorithm;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod support;
use support::{build_with_prior, critic, data_spec, uniform, ACT, OBS, SHAPES};

const STATES: usize = 10;

/// A flow map at FQL's shape (4 × 512) or the cpu profile's (3 × 256), 10 Euler steps.
fn flow_map(hidden: usize, width: usize) -> FlowMap {
    let device = support::device();
    let net = NetConfig {
        hidden,
        width,
        layer_norm: false,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let field = VelocityField::new(&net, Activation::Gelu, OBS, ACT, &mut rng, &device);
    FlowMap::new(&field, 10)
}

/// The cpu profile's prior (T = 20, unit actions).
fn prior_t20() -> DiffusionPrior {
    let device = support::device();
    offrl::backend::seed(&device, 0);
    let schedule = ScheduleConfig {
        steps: 20,
        beta_start: 3.75e-4,
        beta_end: 0.3,
        ..Default::default()
    };
    let spec = PriorSpec::new(data_spec(), schedule, EpsNetConfig::default(), false, 0.99).unwrap();
    DiffusionPrior::new(spec, &device).unwrap()
}

/// The outsourced sampler's policy on `map`: the default 25-step reference, the cpu profile's
/// settings (`langevin` as given).
fn outsourced(map: BehaviorMap, langevin: bool) -> OutsourcedPolicy {
    let device = support::device();
    offrl::backend::seed(&device, 0);
    let defaults = OutsourcedConfig::default();
    let mut config = RtbConfig {
        trajectories: 16,
        tanh_jacobian: false,
        ..RtbConfig::default()
    };
    config.correction.langevin = langevin;
    let reference = StandardNormal {
        schedule: NoiseSchedule::new(&defaults.schedule).unwrap(),
        dim: ACT,
    };
    let reward = MapReward {
        map,
        q: critic(0),
        alpha: 1.0,
        spec: data_spec(),
    };
    let sampler = Rtb::new(config, reference, reward, OBS, None, &device).unwrap();
    OutsourcedPolicy::new(&sampler, 1)
}

fn bench_acting(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let obs = uniform(&mut rng, STATES * OBS);
    let mut group = c.benchmark_group("act_10_states");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let mut run = |name: &str, policy: &mut dyn Policy| {
        group.bench_function(name, |bench| {
            bench.iter(|| policy.act(&obs, STATES).unwrap())
        });
    };
    for shape in &SHAPES {
        let (rtb, prior) = build_with_prior(shape, shape.chunk);
        run(
            &format!("diffusion_bc_T{}", shape.steps),
            &mut DiffusionPolicy::new(&prior, 1),
        );
        run(
            &format!("rtb_T{}", shape.steps),
            &mut RtbPolicy::new(&prior, &rtb, 1),
        );
    }
    let small = flow_map(3, 256);
    run(
        "flow_bc_3x256",
        &mut MapPolicy::new(small.clone(), &data_spec(), 1),
    );
    run(
        "flow_bc_4x512",
        &mut MapPolicy::new(flow_map(4, 512), &data_spec(), 1),
    );
    let flow = || BehaviorMap::Flow(Box::new(small.clone()));
    run("outsourced_flow_3x256", &mut outsourced(flow(), false));
    run(
        "outsourced_flow_3x256_langevin",
        &mut outsourced(flow(), true),
    );
    let prior = prior_t20();
    let ddim = Ddim::new(&prior.schedule, 0).unwrap();
    let map = BehaviorMap::Ddim(Box::new(DdimMap::new(&prior, ddim)));
    run("outsourced_ddim_T20", &mut outsourced(map, false));
    let device = support::device();
    for (hidden, width) in [(4, 512), (3, 256)] {
        let cfg = FqlConfig {
            actor_net: NetConfig {
                hidden,
                width,
                layer_norm: false,
            },
            ..FqlConfig::default()
        };
        let fql = Fql::new(cfg, data_spec(), &device, 0).unwrap();
        run(
            &format!("fql_one_step_{hidden}x{width}"),
            fql.policy().unwrap().as_mut(),
        );
    }
    let iql = Iql::new(IqlConfig::default(), data_spec(), &device, 0).unwrap();
    run("iql_actor_2x256", iql.policy().unwrap().as_mut());
    group.finish();
}

criterion_group!(benches, bench_acting);
criterion_main!(benches);
