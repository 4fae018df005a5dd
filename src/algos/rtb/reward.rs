//! The reward: `log r(s, x) = Q(s, a(x))/α`, optionally with the tanh Jacobian, and its gradient
//! with respect to the chain's actions (the Langevin term).

use burn::tensor::Tensor;

use crate::diffusion::PriorSpec;

/// `log r(s, x)` for chain outputs `x` (model space, `[n, act_dim]`) and the observations the
/// ε-models see (normalised, `[n, obs_dim]`): `[n]`, differentiable with respect to `x`.
pub trait LogReward {
    fn log_reward(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<1>;

    /// `∇_x log r(s, x)`, detached, on `x`'s device without autodiff. The default
    /// differentiates [`LogReward::log_reward`] with burn ([`reward_gradient`]); override it
    /// with a faster computation of the same values.
    fn gradient(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        reward_gradient(self, obs, x)
    }
}

impl<R: LogReward + ?Sized> LogReward for &R {
    fn log_reward(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<1> {
        (**self).log_reward(obs, x)
    }

    fn gradient(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        (**self).gradient(obs, x)
    }
}

/// An action-value function `Q(s, a)` on raw observations and environment actions: `[n]`,
/// differentiable with respect to `a`.
pub trait QFunction {
    fn q(&self, obs: Tensor<2>, actions: Tensor<2>) -> Tensor<1>;

    /// `∂Q/∂a` (row-major `[n, act_dim]`) at raw observations `obs` and environment actions
    /// `actions` (row-major host data), when the function can compute it on the host (the
    /// fused executors); `None` sends [`QReward`] to burn's autodiff.
    fn action_gradient(&self, _obs: &[f32], _actions: &[f32], _n: usize) -> Option<Vec<f32>> {
        None
    }
}

impl<F: Fn(Tensor<2>, Tensor<2>) -> Tensor<1>> QFunction for F {
    fn q(&self, obs: Tensor<2>, actions: Tensor<2>) -> Tensor<1> {
        self(obs, actions)
    }
}

/// `log r(s, x) = Q(s, a(x))/α [+ Σ log(1 − tanh² x)]`: maps the chain's observations back to raw
/// ones and its outputs to environment actions (both by the prior's [`PriorSpec`]) before
/// calling Q.
#[derive(Debug, Clone)]
pub struct QReward<Q> {
    pub q: Q,
    pub alpha: f64,
    /// The prior's spaces: observation normalisation and model-space actions.
    pub spaces: PriorSpec,
    /// Add the tanh Jacobian (only meaningful for pre-tanh action spaces).
    pub tanh_jacobian: bool,
}

impl<Q: QFunction> QReward<Q> {
    /// Raw observations from normalised ones (on tensors; [`DataSpec::denormalize_obs`] on host
    /// data).
    fn raw_obs(&self, obs: Tensor<2>) -> Tensor<2> {
        let maps = self.spaces.data.tensors(&obs.device());
        obs * maps.obs_std + maps.obs_mean
    }
}

impl<Q: QFunction> LogReward for QReward<Q> {
    fn log_reward(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<1> {
        let a = self.spaces.action_to_env_tensor(x.clone());
        let q = self.q.q(self.raw_obs(obs), a).div_scalar(self.alpha);
        if self.tanh_jacobian && self.spaces.pre_tanh {
            q + crate::nn::tanh_log_det(x)
        } else {
            q
        }
    }

    /// The chain rule of [`QReward::log_reward`] on the host around Q's own action gradient,
    /// when Q has one ([`QFunction::action_gradient`]); burn's autodiff otherwise.
    fn gradient(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        let [n, ad] = x.dims();
        let device = x.device().without_autodiff();
        let xv = crate::nn::to_vec(x.clone());
        let raw = self
            .spaces
            .data
            .denormalize_obs(&crate::nn::to_vec(obs.clone()));
        let map = self.spaces.action_map(&xv);
        let Some(dq) = self.q.action_gradient(&raw, &map.env, n) else {
            return reward_gradient(self, obs, x);
        };
        let inv_alpha = 1.0 / self.alpha as f32;
        let mut grad: Vec<f32> = (dq.iter().zip(&map.derivative))
            .map(|(q, d)| q * d * inv_alpha)
            .collect();
        // The Jacobian term exists only for pre-tanh actions (where `tanh` is there).
        if let Some(tanh) = map.tanh.as_ref().filter(|_| self.tanh_jacobian) {
            // d/dx Σ log(1 − tanh² x) = −2 tanh x.
            (grad.iter_mut().zip(tanh)).for_each(|(g, t)| *g -= 2.0 * t);
        }
        crate::nn::tensor2(&grad, n, ad, &device)
    }
}

/// `∇_x log r(s, x)`, detached, on `x`'s device without autodiff. Works whatever device the reward
/// lives on: `x` is made a fresh autodiff leaf and everything else enters as a constant.
pub fn reward_gradient<R: LogReward + ?Sized>(
    reward: &R,
    obs: Tensor<2>,
    x: Tensor<2>,
) -> Tensor<2> {
    let leaf = x.clone().without_autodiff().autodiff().require_grad();
    let total = reward
        .log_reward(obs.without_autodiff(), leaf.clone())
        .sum();
    if !total.is_tracked() {
        return x.without_autodiff().zeros_like(); // r does not depend on x
    }
    let grads = total.backward();
    leaf.grad(&grads)
        .unwrap_or_else(|| x.without_autodiff().zeros_like())
}
