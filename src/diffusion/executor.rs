//! The ε-network as the engine runs it: [`ActingEps`] for sampling with frozen weights and
//! [`TrainingEps`] inside one training step. Each is one type whatever the [`Engine`]: on the
//! host the fused executor of [`super::fused`] runs the network, elsewhere burn's module does,
//! and the code around them (the sampler, the denoising loss, RTB's likelihoods) is written once
//! against [`EpsModel`] and tensors. The same shape as [`crate::nn::TrainingMlp`].

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Gradients, Int, Tensor, TensorData};

use super::fused::{EpsRows, FusedEpsNet, LeafEps};
use super::model::{EpsModel, EpsNet};
use super::schedule::NoiseSchedule;
use crate::backend::Engine;
use crate::nn;

/// A frozen ε-network for sampling: a snapshot of the weights, built again when they change.
pub enum ActingEps {
    Host(Box<FusedEpsNet>),
    /// burn's inference module and its schedule.
    Burn(Box<(EpsNet, NoiseSchedule)>),
}

impl ActingEps {
    /// `net` on `schedule` as the engine of its parameters' device runs it.
    pub fn new(net: &EpsNet, schedule: &NoiseSchedule) -> Self {
        Self::with_engine(net, schedule, Engine::for_device(&net.device()))
    }

    /// `net` on `schedule` as `engine` runs it (tests compare the engines).
    pub fn with_engine(net: &EpsNet, schedule: &NoiseSchedule, engine: Engine) -> Self {
        match engine {
            Engine::Host => Self::Host(Box::new(FusedEpsNet::new(net, schedule))),
            Engine::Burn => Self::Burn(Box::new((net.valid(), schedule.clone()))),
        }
    }
}

impl EpsModel for ActingEps {
    fn schedule(&self) -> &NoiseSchedule {
        match self {
            Self::Host(fused) => fused.schedule(),
            Self::Burn(burn) => &burn.1,
        }
    }

    fn act_dim(&self) -> usize {
        match self {
            Self::Host(fused) => fused.act_dim(),
            Self::Burn(burn) => burn.0.act_dim(),
        }
    }

    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        match self {
            Self::Host(fused) => fused.eps_rows(obs, x_t, t),
            // One step for all rows (also `t` of length 1): the cheaper step-wise pass.
            Self::Burn(burn) if t.iter().all(|&s| s == t[0]) => burn.0.forward_step(obs, x_t, t[0]),
            Self::Burn(burn) => burn.0.forward_rows(obs, x_t, t),
        }
    }

    fn eps(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        match self {
            Self::Host(fused) => fused.eps(obs, x_t, t),
            Self::Burn(burn) => burn.0.forward_step(obs, x_t, t),
        }
    }
}

/// An ε-network inside one training step. On the host its forward pass runs fused and enters
/// the autodiff graph as a leaf (one recorded pass at a time: the last before
/// [`TrainingEps::register_grads`] counts); elsewhere it is burn's module. The loss is written
/// once, with tensors, for both.
pub struct TrainingEps<'a> {
    net: &'a EpsNet,
    schedule: &'a NoiseSchedule,
    leaf: Option<LeafEps<'a>>,
}

impl<'a> TrainingEps<'a> {
    /// `net` (on an autodiff device) on `schedule`, as `engine` runs it.
    pub fn new(net: &'a EpsNet, schedule: &'a NoiseSchedule, engine: Engine) -> Self {
        let leaf = engine
            .is_host()
            .then(|| LeafEps::new(net, schedule, &net.device()));
        Self {
            net,
            schedule,
            leaf,
        }
    }

    /// ε̂ for rows that share observations: row `r` sees `states[state[r]]` (`states`
    /// normalised `[n_states, obs_dim]`), `x_t[r]` and step `t[r]`. On the host each state's
    /// first-layer part is computed once for all its rows.
    pub fn forward_shared(
        &self,
        states: Tensor<2>,
        state: &[usize],
        x_t: Tensor<2>,
        t: &[usize],
    ) -> Tensor<2> {
        match &self.leaf {
            Some(leaf) => leaf.forward(&EpsRows {
                states: &nn::to_vec(states),
                state: Some(state),
                x: &nn::to_vec(x_t),
                t,
            }),
            None => {
                let index: Vec<i64> = state.iter().map(|&s| s as i64).collect();
                let index = Tensor::<1, Int>::from_data(
                    TensorData::new(index, [state.len()]),
                    &x_t.device(),
                );
                self.net.forward_rows(states.select(0, index), x_t, t)
            }
        }
    }

    /// After `loss.backward()`: the network's parameter gradients, registered into `into`
    /// (taken out of `grads` for burn's module; nothing when no pass was recorded).
    pub fn register_grads(&self, grads: &mut Gradients, into: &mut GradientsParams) {
        match &self.leaf {
            Some(leaf) => leaf.gradients(grads, into),
            None => nn::take_gradients(self.net, grads, into),
        }
    }
}

impl EpsModel for TrainingEps<'_> {
    fn schedule(&self) -> &NoiseSchedule {
        self.schedule
    }

    fn act_dim(&self) -> usize {
        self.net.act_dim()
    }

    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        match &self.leaf {
            Some(leaf) => leaf.eps_rows(obs, x_t, t),
            None => self.net.forward_rows(obs, x_t, t),
        }
    }
}
