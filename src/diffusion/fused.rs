//! A fused CPU executor for the ε-network ([`crate::nn::host`] kernels): sampling (evaluation,
//! RTB's chains) and, through a leaf of the autodiff graph, training (the prior's denoising
//! step, RTB's gradient pass).
//!
//! The weights are taken out of the burn module; a forward pass is then a few GEMMs with bias,
//! LayerNorm and activation applied in one pass over each output row, and no per-op dispatch.
//! The first layer `W·[s, x_t, fourier(τ_t)] + b` is split by what each part depends on, so two
//! pieces of work are done less often, with identical results (tested against the burn module):
//! - the time part, `W_τ·fourier(τ_t) + b`, is one row per step `t` (`[T, width]`), computed once
//!   when the executor is built, not once per row;
//! - the state part, `W_s·s`, is computed once per distinct state: a batch names its states and
//!   which state each row has ([`EpsRows`]), so the k trajectories of a state and the T steps of a
//!   chain share it; a single-step call ([`FusedEpsNet::eps_slice`], the sampler's) caches it on
//!   the observation batch. Only the action part `W_x·x_t` (act_dim columns) is per row.
//!
//! The backward pass mirrors this: the first layer's gradient rows are summed per step and per
//! state before the products with the time features and the states.
//!
//! [`FusedEpsNet`] implements [`EpsModel`], so the one sampler in [`super::chain`] drives it and
//! the Gaussian step is not written twice; [`LeafEps`] is the training-side [`EpsModel`]. Code
//! outside the diffusion module meets both through [`super::executor`]'s one-type-per-use
//! wrappers, which pick them or burn's module by the engine.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::{AddAssign, Range};
use std::sync::Arc;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Tensor};

use super::model::{EpsModel, EpsNet};
use super::schedule::NoiseSchedule;
use crate::nn::host::{
    self, block_forward, BlockTape, HostMlp, HostNorm, LinearGrads, MlpGrads, MlpTape, NormGrads,
    ShardedLeaf,
};
use crate::nn::{self, Activation};
use offrl_kernels::{self as kernels, gemm, Mat, Shards};

/// The rows of an ε-network batch by their parts: row `r` sees the observation
/// `states[state[r]]` (`states` row-major `[n_states, obs_dim]`), the chain state `x[r]`
/// (`[n, act_dim]`) and the step `t[r]` ∈ 1..=T.
#[derive(Debug, Clone, Copy)]
pub struct EpsRows<'a> {
    pub states: &'a [f32],
    /// The state of each row; `None`: row `r` has state `r`.
    pub state: Option<&'a [usize]>,
    pub x: &'a [f32],
    pub t: &'a [usize],
}

impl EpsRows<'_> {
    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    fn state_of(&self, r: usize) -> usize {
        self.state.map_or(r, |s| s[r])
    }

    /// The rows `rows` (with their own states when rows do not share them).
    pub fn slice(&self, rows: Range<usize>) -> Self {
        let states = match self.state {
            Some(_) => self.states,
            None => {
                let obs_dim = self.states.len() / self.len().max(1);
                &self.states[rows.start * obs_dim..rows.end * obs_dim]
            }
        };
        let act_dim = self.x.len() / self.len().max(1);
        EpsRows {
            states,
            state: self.state.map(|s| &s[rows.clone()]),
            x: &self.x[rows.start * act_dim..rows.end * act_dim],
            t: &self.t[rows],
        }
    }
}

/// The ε-network as plain buffers; see the module docs.
pub struct FusedEpsNet {
    schedule: NoiseSchedule,
    obs_dim: usize,
    act_dim: usize,
    width: usize,
    /// First layer, observation rows `[obs_dim, width]` and action rows `[act_dim, width]`.
    w_obs: Vec<f32>,
    w_act: Vec<f32>,
    has_bias: bool,
    /// Fourier features per step, `[T, time_dim]`.
    time_features: Vec<f32>,
    time_dim: usize,
    /// `W_τ·fourier(τ_t) + b` for t = 1..T: `[T, width]`.
    time_bias: Vec<f32>,
    first_norm: Option<HostNorm>,
    activation: Activation,
    trunk: HostMlp,
    /// The last observation batch of [`FusedEpsNet::eps_slice`] and its first-layer state part.
    state_cache: std::sync::Mutex<(Vec<f32>, Arc<Vec<f32>>)>,
}

/// What [`FusedEpsNet::backward`] needs from [`FusedEpsNet::forward_tape`].
pub struct EpsTape {
    first: BlockTape,
    trunk: MlpTape,
}

/// Gradients of every [`EpsNet`] parameter.
pub struct EpsGrads {
    input: LinearGrads,
    time: Vec<f32>,
    norm: Option<NormGrads>,
    trunk: MlpGrads,
}

impl AddAssign for EpsGrads {
    fn add_assign(&mut self, part: Self) {
        self.input += part.input;
        kernels::add_to(&mut self.time, &part.time);
        if let (Some(norm), Some(part_norm)) = (self.norm.as_mut(), part.norm) {
            *norm += part_norm;
        }
        self.trunk += part.trunk;
    }
}

impl EpsGrads {
    /// Register for `net`'s parameters (the network these gradients were computed for).
    pub fn register(self, net: &EpsNet, into: &mut GradientsParams) {
        self.input.register(&net.input, into);
        LinearGrads {
            w: self.time,
            b: None,
        }
        .register(&net.time, into);
        if let (Some(g), Some(norm)) = (self.norm, &net.norm) {
            g.register(norm, into);
        }
        self.trunk.register(&net.trunk, into);
    }
}

impl FusedEpsNet {
    pub fn new(net: &EpsNet, schedule: &NoiseSchedule) -> FusedEpsNet {
        let [d_in, width] = net.input.weight.val().dims();
        let act_dim = net.trunk.output.weight.val().dims()[1];
        let obs_dim = d_in - act_dim;
        let w_in = nn::to_vec(net.input.weight.val());
        let b_in = net.input.bias.as_ref().map(|b| nn::to_vec(b.val()));
        let w_time = nn::to_vec(net.time.weight.val());
        let steps = schedule.steps();
        // Same arithmetic as the module: the projection of the features, then the bias.
        let mut time_bias = kernels::product(
            Mat::new(&net.time_features, steps, net.time_dim),
            Mat::new(&w_time, net.time_dim, width),
        );
        if let Some(b) = &b_in {
            for row in time_bias.chunks_exact_mut(width) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        }
        FusedEpsNet {
            schedule: schedule.clone(),
            obs_dim,
            act_dim,
            width,
            w_obs: w_in[..obs_dim * width].to_vec(),
            w_act: w_in[obs_dim * width..].to_vec(),
            has_bias: b_in.is_some(),
            time_features: net.time_features.clone(),
            time_dim: net.time_dim,
            time_bias,
            first_norm: net.norm.as_ref().map(HostNorm::from_layer_norm),
            activation: net.activation,
            trunk: HostMlp::from_mlp(&net.trunk),
            state_cache: std::sync::Mutex::new((Vec::new(), Arc::new(Vec::new()))),
        }
    }

    /// `states · W_s`: `[n_states, width]`.
    fn state_part(&self, states: &[f32]) -> Vec<f32> {
        let n = states.len() / self.obs_dim;
        kernels::product(
            Mat::new(states, n, self.obs_dim),
            Mat::new(&self.w_obs, self.obs_dim, self.width),
        )
    }

    /// First-layer pre-activations `[n, width]`: state part + time part (with the bias) +
    /// `x·W_x`.
    fn first_layer(&self, rows: &EpsRows<'_>, state_part: &[f32]) -> Vec<f32> {
        let (w, ad) = (self.width, self.act_dim);
        let steps = self.schedule.steps();
        if let Some(&t) = rows.t.iter().find(|t| !(1..=steps).contains(*t)) {
            panic!("step {t} outside 1..={steps}");
        }
        let (time_bias, w_act) = (&self.time_bias, &self.w_act);
        let fill = |first: usize, block: &mut [MaybeUninit<f32>]| {
            for (i, row) in block.chunks_exact_mut(w).enumerate() {
                let r = first + i;
                let (s, t) = (rows.state_of(r), rows.t[r]);
                let (state, time) = (
                    &state_part[s * w..(s + 1) * w],
                    &time_bias[(t - 1) * w..t * w],
                );
                let x = &rows.x[r * ad..(r + 1) * ad];
                first_layer_row(row, state, time, x, w_act);
            }
        };
        // SAFETY: `first_layer_row` writes every element of each row.
        unsafe { kernels::new_rows(rows.len(), w, fill) }
    }

    /// ε̂ for `rows` (inference).
    pub fn forward_rows(&self, rows: &EpsRows<'_>) -> Vec<f32> {
        self.forward_sharded(rows, &self.state_part(rows.states))
    }

    /// ε̂ for `rows` from their states' first-layer part, in row [`Shards`]: each thread takes
    /// its block of rows through the whole network, kernels unsplit (one hand-off per call
    /// instead of one per GEMM and row pass). Small batches stay one shard on this thread.
    fn forward_sharded(&self, rows: &EpsRows<'_>, state_part: &[f32]) -> Vec<f32> {
        let w = self.width;
        Shards::of(rows.len()).map_concat(|_, range| {
            // Rows with their own states index `state_part` by row.
            let part = match rows.state {
                Some(_) => state_part,
                None => &state_part[range.start * w..range.end * w],
            };
            let mut z = self.first_layer(&rows.slice(range.clone()), part);
            self.finish(&mut z, range.len())
        })
    }

    fn finish(&self, z: &mut [f32], n: usize) -> Vec<f32> {
        block_forward(
            z,
            self.width,
            None,
            self.first_norm.as_ref(),
            self.activation,
            None,
        );
        self.trunk.forward(z, n)
    }

    /// ε̂ for `n` rows at step `t`: `obs` `[n, obs_dim]` (normalised), `x` `[n, act_dim]`. The
    /// state part is cached on `obs` (the sampler calls this T times with the same batch).
    pub fn eps_slice(&self, obs: &[f32], x: &[f32], n: usize, t: usize) -> Vec<f32> {
        let steps = vec![t; n];
        let rows = EpsRows {
            states: obs,
            state: None,
            x,
            t: &steps,
        };
        // The lock is released before the pass: its shards run on the pool, and a thread
        // waiting there may pick up another call of this network.
        let state_part = {
            let mut cache = self.state_cache.lock().expect("state cache");
            if cache.0 != obs {
                *cache = (obs.to_vec(), Arc::new(self.state_part(obs)));
            }
            Arc::clone(&cache.1)
        };
        self.forward_sharded(&rows, &state_part)
    }

    /// [`FusedEpsNet::forward_rows`] keeping what the backward pass needs.
    pub fn forward_tape(&self, rows: &EpsRows<'_>) -> (Vec<f32>, EpsTape) {
        let n = rows.len();
        let mut z = self.first_layer(rows, &self.state_part(rows.states));
        let mut first = BlockTape::default();
        block_forward(
            &mut z,
            self.width,
            None,
            self.first_norm.as_ref(),
            self.activation,
            Some(&mut first),
        );
        let (out, trunk) = self.trunk.forward_tape(z, n);
        (out, EpsTape { first, trunk })
    }

    /// Parameter gradients from the gradient `d_out` (`[n, act_dim]`) at the output of
    /// [`FusedEpsNet::forward_tape`] on the same `rows`.
    pub fn backward(&self, tape: &EpsTape, rows: &EpsRows<'_>, d_out: &[f32]) -> EpsGrads {
        let (w, ad, od) = (self.width, self.act_dim, self.obs_dim);
        let n = rows.len();
        let (d, trunk) = self.trunk.backward(&tape.trunk, d_out, true, true);
        let (mut d, trunk) = (
            d.expect("input gradient"),
            trunk.expect("parameter gradients"),
        );
        let mut norm = self.first_norm.as_ref().map(NormGrads::zeros);
        host::block_backward(
            &mut d,
            w,
            self.first_norm.as_ref(),
            self.activation,
            &tape.first,
            tape.trunk.input(),
            norm.as_mut(),
        );
        // d = ∂L/∂z₁ [n, width]. Sum its rows per state and per step, then one product each.
        let n_states = rows.states.len() / od;
        let steps = self.schedule.steps();
        let mut per_state = vec![0.0f32; n_states * w];
        let mut per_step = vec![0.0f32; steps * w];
        for (r, dz) in d.chunks_exact(w).enumerate() {
            let (s, t) = (rows.state_of(r), rows.t[r]);
            kernels::add_to(&mut per_state[s * w..(s + 1) * w], dz);
            kernels::add_to(&mut per_step[(t - 1) * w..t * w], dz);
        }
        let mut w_in = vec![0.0f32; (od + ad) * w];
        let (w_obs, w_act) = w_in.split_at_mut(od * w);
        gemm(
            w_obs,
            Mat::new(rows.states, n_states, od).t(),
            Mat::new(&per_state, n_states, w),
            false,
        );
        gemm(
            w_act,
            Mat::new(rows.x, n, ad).t(),
            Mat::new(&d, n, w),
            false,
        );
        let time = kernels::product(
            Mat::new(&self.time_features, steps, self.time_dim).t(),
            Mat::new(&per_step, steps, w),
        );
        // Every row's gradient reaches the bias once: it is the per-step sums' total.
        let b = self.has_bias.then(|| {
            let mut b = vec![0.0f32; w];
            per_step
                .chunks_exact(w)
                .for_each(|row| kernels::add_to(&mut b, row));
            b
        });
        EpsGrads {
            input: LinearGrads { w: w_in, b },
            time,
            norm,
            trunk,
        }
    }
}

/// `row = state + time + Σ_k x_k · W_x[k]`, writing every element of `row`.
fn first_layer_row(
    row: &mut [MaybeUninit<f32>],
    state: &[f32],
    time: &[f32],
    x: &[f32],
    w_act: &[f32],
) {
    let w = row.len();
    assert!(
        state.len() == w && time.len() == w && w_act.len() == x.len() * w,
        "first-layer row widths differ"
    );
    // Sixteen columns at a time, the action terms added in registers: each output is written
    // once (one pass over the row instead of one per action dimension).
    const CHUNK: usize = 16;
    let full = w - w % CHUNK;
    offrl_kernels::vectorized!({
        for c in (0..full).step_by(CHUNK) {
            let mut acc = [0.0f32; CHUNK];
            for ((a, s), t) in acc.iter_mut().zip(&state[c..]).zip(&time[c..]) {
                *a = s + t;
            }
            for (k, &xv) in x.iter().enumerate() {
                let wk = &w_act[k * w + c..k * w + c + CHUNK];
                for (a, &wv) in acc.iter_mut().zip(wk) {
                    *a = xv.mul_add(wv, *a);
                }
            }
            for (v, a) in row[c..c + CHUNK].iter_mut().zip(acc) {
                v.write(a);
            }
        }
        for j in full..w {
            let mut a = state[j] + time[j];
            for (k, &xv) in x.iter().enumerate() {
                a = xv.mul_add(w_act[k * w + j], a);
            }
            row[j].write(a);
        }
    })
}

impl EpsModel for FusedEpsNet {
    fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn act_dim(&self) -> usize {
        self.act_dim
    }

    /// Rows that share one step go through [`EpsModel::eps`] (its cached state part).
    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        if t.iter().all(|&s| s == t[0]) {
            return self.eps(obs, x_t, t[0]);
        }
        let device = x_t.device();
        let (obs, x) = (nn::to_vec(obs), nn::to_vec(x_t));
        let e = self.forward_rows(&EpsRows {
            states: &obs,
            state: None,
            x: &x,
            t,
        });
        nn::tensor2(&e, t.len(), self.act_dim, &device)
    }

    fn eps(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        let device = x_t.device();
        let n = x_t.dims()[0];
        let e = self.eps_slice(&nn::to_vec(obs), &nn::to_vec(x_t), n, t);
        nn::tensor2(&e, n, self.act_dim, &device)
    }
}

/// The ε-network for training on the CPU: an [`EpsModel`] whose `eps_rows` runs the fused
/// forward and returns its output as a [`host::leaf`] of the autodiff graph, so that the loss
/// (written with tensors, e.g. [`super::denoising_loss`]) is differentiated by burn up to ε̂ and
/// [`LeafEps::gradients`] takes it from there through the network. One `eps_rows` call per
/// backward pass.
pub(crate) struct LeafEps<'a> {
    pub fused: FusedEpsNet,
    net: &'a EpsNet,
    device: Device,
    recorded: RefCell<Option<Recorded>>,
}

struct Recorded {
    pass: ShardedLeaf<EpsTape>,
    states: Vec<f32>,
    state: Option<Vec<usize>>,
    x: Vec<f32>,
    t: Vec<usize>,
}

impl<'a> LeafEps<'a> {
    /// For the trained network `net` (on the autodiff `device`).
    pub fn new(net: &'a EpsNet, schedule: &NoiseSchedule, device: &Device) -> Self {
        Self {
            fused: FusedEpsNet::new(net, schedule),
            net,
            device: device.clone(),
            recorded: RefCell::new(None),
        }
    }

    /// Record a forward pass of `rows` and return ε̂ as a leaf `[n, act_dim]`.
    pub fn forward(&self, rows: &EpsRows<'_>) -> Tensor<2> {
        let fused = &self.fused;
        let pass = ShardedLeaf::record(rows.len(), fused.act_dim, &self.device, |part| {
            fused.forward_tape(&rows.slice(part))
        });
        let leaf = pass.leaf();
        *self.recorded.borrow_mut() = Some(Recorded {
            pass,
            states: rows.states.to_vec(),
            state: rows.state.map(<[usize]>::to_vec),
            x: rows.x.to_vec(),
            t: rows.t.to_vec(),
        });
        leaf
    }

    /// After `loss.backward()`: the network's parameter gradients, registered into `into`
    /// (nothing when no forward pass was recorded).
    pub fn gradients(&self, grads: &Gradients, into: &mut GradientsParams) {
        let Some(rec) = self.recorded.borrow_mut().take() else {
            return;
        };
        let rows = EpsRows {
            states: &rec.states,
            state: rec.state.as_deref(),
            x: &rec.x,
            t: &rec.t,
        };
        let fused = &self.fused;
        rec.pass
            .backward(grads, |tape, part, d| {
                fused.backward(tape, &rows.slice(part), d)
            })
            .register(self.net, into);
    }
}

impl EpsModel for LeafEps<'_> {
    fn schedule(&self) -> &NoiseSchedule {
        &self.fused.schedule
    }

    fn act_dim(&self) -> usize {
        self.fused.act_dim
    }

    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        let (obs, x) = (nn::to_vec(obs), nn::to_vec(x_t));
        self.forward(&EpsRows {
            states: &obs,
            state: None,
            x: &x,
            t,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::chain::{denoising_loss, sample_actions, LossWeighting};
    use crate::diffusion::model::EpsNetConfig;
    use crate::diffusion::schedule::ScheduleConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn net(
        activation: Activation,
        layer_norm: bool,
        device: &Device,
    ) -> (EpsNet, NoiseSchedule, Device) {
        crate::backend::seed(device, 11);
        let schedule = NoiseSchedule::new(&ScheduleConfig {
            steps: 6,
            ..Default::default()
        })
        .unwrap();
        let cfg = EpsNetConfig {
            width: 32,
            hidden: 3,
            time_harmonics: 4,
            activation,
            layer_norm,
        };
        (
            EpsNet::new(&cfg, 5, 3, &schedule, device),
            schedule,
            device.clone(),
        )
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(u, v)| (u - v).abs())
            .fold(0.0f32, f32::max)
    }

    #[test]
    fn fused_forward_equals_the_burn_module() {
        for (act, ln) in [
            (Activation::Gelu, true),
            (Activation::Relu, false),
            (Activation::Mish, true),
            (Activation::Tanh, false),
        ] {
            let (net, schedule, device) = net(act, ln, &Device::flex());
            let fused = FusedEpsNet::new(&net, &schedule);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let n = 300;
            let obs_v = crate::diffusion::gaussian::normal_vec(&mut rng, n * 5);
            let x_v = crate::diffusion::gaussian::normal_vec(&mut rng, n * 3);
            let obs = nn::tensor2(&obs_v, n, 5, &device);
            let x = nn::tensor2(&x_v, n, 3, &device);
            for t in [1, 4, 6] {
                let a = nn::to_vec(net.forward_step(obs.clone(), x.clone(), t));
                let b = nn::to_vec(fused.eps(obs.clone(), x.clone(), t));
                let worst = max_diff(&a, &b);
                assert!(worst < 1e-5, "{act:?} ln={ln} t={t}: max diff {worst}");
            }
            // Mixed steps per row.
            let t: Vec<usize> = (0..n).map(|i| 1 + i % 6).collect();
            let a = nn::to_vec(net.forward_rows(obs.clone(), x.clone(), &t));
            let b = nn::to_vec(fused.eps_rows(obs, x, &t));
            let worst = max_diff(&a, &b);
            assert!(worst < 1e-5, "{act:?}: rows max diff {worst}");
        }
    }

    /// Rows that name shared states give what the same rows with repeated states give.
    #[test]
    fn shared_state_rows_equal_repeated_rows() {
        let (net, schedule, _) = net(Activation::Gelu, true, &Device::flex());
        let fused = FusedEpsNet::new(&net, &schedule);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let states = crate::diffusion::gaussian::normal_vec(&mut rng, 4 * 5);
        // 4 states × 3 trajectories × 12 rows (steps 1..=6 twice): a row shard per thread.
        let (n, k) = (4 * 3 * 12, 3);
        let x = crate::diffusion::gaussian::normal_vec(&mut rng, n * 3);
        let state: Vec<usize> = (0..n).map(|r| (r % 12) / k).collect();
        let t: Vec<usize> = (0..n).map(|r| 1 + (r / 12) % 6).collect();
        let repeated: Vec<f32> = state
            .iter()
            .flat_map(|&s| states[s * 5..(s + 1) * 5].to_vec())
            .collect();
        let shared = fused.forward_rows(&EpsRows {
            states: &states,
            state: Some(&state),
            x: &x,
            t: &t,
        });
        let plain = fused.forward_rows(&EpsRows {
            states: &repeated,
            state: None,
            x: &x,
            t: &t,
        });
        assert!(max_diff(&shared, &plain) < 1e-6);
    }

    /// The burn module as an [`EpsModel`] (3 action dimensions): the reference the fused paths are
    /// compared with.
    struct Module<'a>(&'a EpsNet, &'a NoiseSchedule);

    impl EpsModel for Module<'_> {
        fn schedule(&self) -> &NoiseSchedule {
            self.1
        }
        fn act_dim(&self) -> usize {
            3
        }
        fn eps_rows(&self, obs: Tensor<2>, x: Tensor<2>, t: &[usize]) -> Tensor<2> {
            self.0.forward_rows(obs, x, t)
        }
        fn eps(&self, obs: Tensor<2>, x: Tensor<2>, t: usize) -> Tensor<2> {
            self.0.forward_step(obs, x, t)
        }
    }

    /// The denoising loss's parameter gradients through [`LeafEps`] (fused forward and backward,
    /// shared states) equal burn's autodiff through the module.
    #[test]
    fn leaf_gradients_equal_burn_autodiff() {
        for (act, ln) in [(Activation::Gelu, true), (Activation::Relu, false)] {
            let device = Device::flex().autodiff();
            let (net, schedule, _) = net(act, ln, &device);
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            // Enough rows for a shard per thread (uneven ones).
            let n = 157;
            let obs = crate::diffusion::gaussian::normal_vec(&mut rng, n * 5);
            let a0 = crate::diffusion::gaussian::normal_vec(&mut rng, n * 3);
            let weighting = LossWeighting::MinSnr(5.0);
            let loss = denoising_loss(
                &Module(&net, &schedule),
                nn::tensor2(&obs, n, 5, &device),
                &a0,
                weighting,
                &mut ChaCha8Rng::seed_from_u64(4),
            );
            let want = GradientsParams::from_grads(loss.backward(), &net);

            let leaf = LeafEps::new(&net, &schedule, &device);
            let loss2 = denoising_loss(
                &leaf,
                nn::tensor2(&obs, n, 5, &device),
                &a0,
                weighting,
                &mut ChaCha8Rng::seed_from_u64(4),
            );
            let l1 = loss.into_scalar::<f32>();
            let l2 = loss2.clone().into_scalar::<f32>();
            assert!((l1 - l2).abs() < 1e-5 * l1.abs().max(1.0), "{l1} vs {l2}");
            let mut got = GradientsParams::new();
            leaf.gradients(&loss2.backward(), &mut got);
            assert_eq!(got.len(), want.len());
            let check2 = |p: &burn::module::Param<Tensor<2>>, what: &str| {
                let (a, b) = (
                    nn::to_vec(got.get::<2>(p.id).unwrap()),
                    nn::to_vec(want.get::<2>(p.id).unwrap()),
                );
                let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                assert!(max_diff(&a, &b) < 1e-5 * scale.max(1.0), "{act:?} {what}");
            };
            check2(&net.input.weight, "input weight");
            check2(&net.time.weight, "time weight");
            check2(&net.trunk.layers[0].weight, "trunk weight");
            check2(&net.trunk.output.weight, "output weight");
            for (p, what) in [
                (net.input.bias.as_ref().unwrap(), "input bias"),
                (net.trunk.output.bias.as_ref().unwrap(), "output bias"),
            ] {
                let (a, b) = (
                    nn::to_vec(got.get::<1>(p.id).unwrap()),
                    nn::to_vec(want.get::<1>(p.id).unwrap()),
                );
                assert!(max_diff(&a, &b) < 1e-5, "{act:?} {what}");
            }
            if let Some(norm) = &net.norm {
                let (a, b) = (
                    nn::to_vec(got.get::<1>(norm.gamma.id).unwrap()),
                    nn::to_vec(want.get::<1>(norm.gamma.id).unwrap()),
                );
                assert!(max_diff(&a, &b) < 1e-5, "first LayerNorm gamma");
            }
        }
    }

    /// A sharded [`LeafEps`] pass (rows naming shared states, more rows than a shard) gives the
    /// gradients of one unsharded backward pass over the whole batch.
    #[test]
    fn sharded_leaf_gradients_equal_one_pass() {
        let device = Device::flex().autodiff();
        let (net, schedule, _) = net(Activation::Gelu, true, &device);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let states = crate::diffusion::gaussian::normal_vec(&mut rng, 4 * 5);
        let n = 4 * 3 * 12; // 4 states × 3 trajectories × 12 rows (steps 1..=6 twice)
        assert_eq!(Shards::of(n).count(), rayon::current_num_threads().min(2));
        let x = crate::diffusion::gaussian::normal_vec(&mut rng, n * 3);
        let upstream = crate::diffusion::gaussian::normal_vec(&mut rng, n * 3);
        let state: Vec<usize> = (0..n).map(|r| (r % 12) / 3).collect();
        let t: Vec<usize> = (0..n).map(|r| 1 + (r / 12) % 6).collect();
        let rows = EpsRows {
            states: &states,
            state: Some(&state),
            x: &x,
            t: &t,
        };
        let leaf = LeafEps::new(&net, &schedule, &device);
        let loss = (leaf.forward(&rows) * nn::tensor2(&upstream, n, 3, &device)).sum();
        let mut sharded = GradientsParams::new();
        leaf.gradients(&loss.backward(), &mut sharded);

        let fused = FusedEpsNet::new(&net, &schedule);
        let (_, tape) = fused.forward_tape(&rows);
        let mut whole = GradientsParams::new();
        fused
            .backward(&tape, &rows, &upstream)
            .register(&net, &mut whole);
        for (p, what) in [
            (&net.input.weight, "input weight"),
            (&net.time.weight, "time weight"),
            (&net.trunk.layers[0].weight, "trunk weight"),
            (&net.trunk.output.weight, "output weight"),
        ] {
            let (a, b) = (
                nn::to_vec(sharded.get::<2>(p.id).unwrap()),
                nn::to_vec(whole.get::<2>(p.id).unwrap()),
            );
            let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert!(max_diff(&a, &b) < 1e-5 * scale, "{what}");
        }
        let bias = net.input.bias.as_ref().unwrap().id;
        let (a, b) = (
            nn::to_vec(sharded.get::<1>(bias).unwrap()),
            nn::to_vec(whole.get::<1>(bias).unwrap()),
        );
        assert!(max_diff(&a, &b) < 1e-4, "input bias");
    }

    #[test]
    fn fused_sampler_gives_the_same_actions() {
        let (net, schedule, device) = net(Activation::Gelu, true, &Device::flex());
        let fused = FusedEpsNet::new(&net, &schedule);
        let obs = nn::tensor2(
            &crate::diffusion::gaussian::normal_vec(&mut ChaCha8Rng::seed_from_u64(5), 40),
            8,
            5,
            &device,
        );
        let a = nn::to_vec(sample_actions(
            &Module(&net, &schedule),
            obs.clone(),
            &mut ChaCha8Rng::seed_from_u64(9),
        ));
        let b = nn::to_vec(sample_actions(
            &fused,
            obs,
            &mut ChaCha8Rng::seed_from_u64(9),
        ));
        let worst = max_diff(&a, &b);
        assert!(worst < 1e-4, "actions differ by {worst}");
    }
}
