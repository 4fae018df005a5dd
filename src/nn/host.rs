//! Host (CPU) execution of the MLPs on plain row-major `f32` buffers: forward passes, and
//! backward passes that give input and parameter gradients. On the CPU backend the tensor
//! library's per-op cost (a separate pass over memory for every bias add, LayerNorm statistic and
//! activation, a scalar `erf` per GELU, the autodiff graph) dominates these small networks; here
//! each layer is one GEMM followed by one fused pass for bias, LayerNorm and activation, written
//! on the kernels of the `offrl-kernels` crate (this module holds no `unsafe` arithmetic of its
//! own beyond writing fresh buffers).
//!
//! Training goes through burn for everything but the networks: a host forward's output enters
//! the autodiff graph as a leaf ([`leaf`]), the loss is written with tensors as usual, and after
//! `loss.backward()` the leaf's gradient is pushed back through the network here
//! ([`HostMlp::backward`]) and registered for the module's parameters
//! ([`MlpGrads::register`]), so that the burn optimizer steps them. Results equal burn's own
//! forward and autodiff to float rounding (tested at 1e-5).

use std::cell::RefCell;
use std::ops::{AddAssign, Range};
use std::sync::OnceLock;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{LayerNorm, Linear};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Tensor};

use offrl_kernels::{
    add_column_sums, add_rows, add_to, gelu, gelu_grad, lane_dot, lane_sum, panel_product,
    par_rows, par_rows_sum, par_rows_with, product, tanh, vectorized, Mat, Panels, Shards,
};

use super::{Activation, Mlp};
use crate::backend::Engine;

/// The activation, in place.
fn activate(act: Activation, v: &mut [f32]) {
    match act {
        Activation::Relu => vectorized!(v.iter_mut().for_each(|x| *x = x.max(0.0))),
        Activation::Gelu => vectorized!(v.iter_mut().for_each(|x| *x = gelu(*x))),
        Activation::Tanh => vectorized!(v.iter_mut().for_each(|x| *x = tanh(*x))),
        Activation::Mish => v.iter_mut().for_each(|x| *x *= x.exp().ln_1p().tanh()),
    }
}

/// `d *= act'(x)`, in place, from the activation's input `x` (for ReLU its output serves as well:
/// both are positive at the same places).
fn activation_backward(act: Activation, pre: &[f32], d: &mut [f32]) {
    match act {
        // burn's ReLU passes the gradient where the output is positive. A select, not a
        // branch: the sign of a pre-activation is a coin flip to the branch predictor.
        Activation::Relu => vectorized!({
            d.iter_mut()
                .zip(pre)
                .for_each(|(d, &x)| *d = if x > 0.0 { *d } else { 0.0 })
        }),
        Activation::Gelu => {
            vectorized!(d.iter_mut().zip(pre).for_each(|(d, &x)| *d *= gelu_grad(x)))
        }
        Activation::Tanh => vectorized!({
            d.iter_mut().zip(pre).for_each(|(d, &x)| {
                let t = tanh(x);
                *d *= 1.0 - t * t
            })
        }),
        Activation::Mish => d.iter_mut().zip(pre).for_each(|(d, &x)| {
            let sp = x.exp().ln_1p();
            let t = sp.tanh();
            let sigmoid = 1.0 / (1.0 + (-x).exp());
            *d *= t + x * (1.0 - t * t) * sigmoid
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// burn's `LayerNormConfig` default, which every LayerNorm here uses.
const LAYER_NORM_EPS: f32 = 1e-5;

/// A linear layer's parameters: `w` `[d_in, d_out]` row-major (burn's layout), optional bias.
#[derive(Debug, Clone)]
pub struct HostLinear {
    w: Vec<f32>,
    pub b: Option<Vec<f32>>,
    pub d_in: usize,
    pub d_out: usize,
    /// `W` and `Wᵀ` for the panel kernel, packed by the first product of at least
    /// [`PANEL_MIN_ROWS`] rows that needs each (`None` inside: not this CPU or shape).
    panels: OnceLock<Option<Panels>>,
    panels_t: OnceLock<Option<Panels>>,
}

/// Products with fewer rows stay on the `gemm` crate: packing `W` once pays off over the calls
/// of a sampling chain or an RTB update, not for the small batches of a training step (whose
/// networks are taken out of burn again at every step).
const PANEL_MIN_ROWS: usize = 1024;

impl HostLinear {
    pub fn from_linear(linear: &Linear) -> Self {
        let [d_in, d_out] = linear.weight.val().dims();
        Self {
            w: super::to_vec(linear.weight.val()),
            b: linear.bias.as_ref().map(|b| super::to_vec(b.val())),
            d_in,
            d_out,
            panels: OnceLock::new(),
            panels_t: OnceLock::new(),
        }
    }

    /// `x · B` for `n` rows, `B` being `W` (as `Mat`) or its transpose, through the panel kernel
    /// when the product is large enough and the CPU has it.
    fn times(&self, x: &[f32], n: usize, transposed: bool) -> Vec<f32> {
        let w = Mat::new(&self.w, self.d_in, self.d_out);
        let (b, cache) = if transposed {
            (w.t(), &self.panels_t)
        } else {
            (w, &self.panels)
        };
        if n >= PANEL_MIN_ROWS {
            if let Some(panels) = cache.get_or_init(|| Panels::pack(b)) {
                return panel_product(x, n, panels);
            }
        }
        product(Mat::new(x, n, b.shape().0), b)
    }

    /// `x · W (+ b)` for `n` rows.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = self.product(x, n);
        if let Some(b) = &self.b {
            par_rows(&mut out, self.d_out, |_, block| {
                vectorized!(add_rows(block, b))
            });
        }
        out
    }

    /// `x · W` for `n` rows, without the bias: [`block_forward`] adds it while it has each row in
    /// cache anyway.
    pub fn product(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.times(x, n, false)
    }

    /// Parameter gradients from the layer's input `x` and the gradient `dz` at its output.
    fn grads(&self, x: &[f32], dz: &[f32], n: usize) -> LinearGrads {
        let w = product(Mat::new(x, n, self.d_in).t(), Mat::new(dz, n, self.d_out));
        let b = self.b.as_ref().map(|_| {
            let mut b = vec![0.0f32; self.d_out];
            add_column_sums(&mut b, dz, self.d_out);
            b
        });
        LinearGrads { w, b }
    }

    /// The gradient at the layer's input, `dz · Wᵀ`.
    fn input_grad(&self, dz: &[f32], n: usize) -> Vec<f32> {
        self.times(dz, n, true)
    }
}

/// LayerNorm parameters.
#[derive(Debug, Clone)]
pub struct HostNorm {
    pub gamma: Vec<f32>,
    pub beta: Option<Vec<f32>>,
}

impl HostNorm {
    pub fn from_layer_norm(norm: &LayerNorm) -> Self {
        Self {
            gamma: super::to_vec(norm.gamma.val()),
            beta: norm.beta.as_ref().map(|b| super::to_vec(b.val())),
        }
    }

    /// `row ← row ⊙ γ (+ β)` on a normalised row.
    #[inline]
    fn apply(&self, row: &mut [f32]) {
        match &self.beta {
            Some(beta) => vectorized!({
                row.iter_mut()
                    .zip(&self.gamma)
                    .zip(beta)
                    .for_each(|((v, g), b)| *v = *v * g + b)
            }),
            None => vectorized!(row.iter_mut().zip(&self.gamma).for_each(|(v, g)| *v *= g)),
        }
    }
}

/// What a hidden block's backward pass needs besides its output: with LayerNorm the normalised
/// pre-activation `x̂` and `1/σ` per row (the activation's input `x̂·γ + β` is recomputed); without,
/// the activation's input, except for ReLU, whose backward reads the output.
#[derive(Debug, Default)]
pub struct BlockTape {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
    pre: Vec<f32>,
}

/// Without LayerNorm the block keeps its activation's input for the backward pass; ReLU's
/// backward reads the block's output instead, which is kept anyway (the next layer's input).
fn keeps_input(act: Activation) -> bool {
    !matches!(act, Activation::Relu)
}

/// A hidden block after its linear layer's product, in place on `z` (`[n, width]`): the bias
/// and LayerNorm (each when given), then the activation. Fills `tape` when given. Each row is
/// biased, normalised, recorded and activated while it is in cache: one pass over memory.
pub fn block_forward(
    z: &mut [f32],
    width: usize,
    bias: Option<&[f32]>,
    norm: Option<&HostNorm>,
    act: Activation,
    tape: Option<&mut BlockTape>,
) {
    let rows = z.len() / width;
    let add_bias = |row: &mut [f32]| {
        if let Some(b) = bias {
            add_to(row, b);
        }
    };
    match (norm, tape) {
        (Some(norm), None) => par_rows(z, width, |_, block| {
            for row in block.chunks_exact_mut(width) {
                vectorized!(add_bias(row));
                vectorized!(normalize_row(row));
                norm.apply(row);
            }
            activate(act, block);
        }),
        (Some(norm), Some(tape)) => {
            // x̂ is written row by row below: no zero-fill first.
            let mut xhat = Vec::with_capacity(z.len());
            let mut rstd = vec![0.0f32; rows];
            par_rows_with(
                z,
                width,
                &mut xhat.spare_capacity_mut()[..rows * width],
                width,
                &mut rstd,
                |block, xhat, rstd| {
                    let rows = block
                        .chunks_exact_mut(width)
                        .zip(xhat.chunks_exact_mut(width));
                    for ((row, xhat), inv) in rows.zip(rstd) {
                        vectorized!(add_bias(row));
                        *inv = vectorized!(normalize_row(row)).0;
                        vectorized!({
                            xhat.iter_mut().zip(&*row).for_each(|(d, v)| {
                                d.write(*v);
                            })
                        });
                        norm.apply(row);
                    }
                    activate(act, block);
                },
            );
            // SAFETY: the blocks cover all rows × width elements, each written above.
            unsafe { xhat.set_len(rows * width) };
            tape.xhat = xhat;
            tape.rstd = rstd;
        }
        (None, Some(tape)) if keeps_input(act) => {
            if let Some(b) = bias {
                par_rows(z, width, |_, block| vectorized!(add_rows(block, b)));
            }
            tape.pre = z.to_vec();
            par_rows(z, width, |_, block| activate(act, block));
        }
        (None, _) => par_rows(z, width, |_, block| {
            if let Some(b) = bias {
                vectorized!(add_rows(block, b));
            }
            activate(act, block);
        }),
    }
}

/// `row ← (row − mean) / √(var + ε)` (biased variance, as burn); returns `(1/σ, mean)`.
#[inline(always)]
fn normalize_row(row: &mut [f32]) -> (f32, f32) {
    let w = row.len() as f32;
    let mean = lane_sum(row, |v| v) / w;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / w;
    let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
    row.iter_mut().for_each(|v| *v = (*v - mean) * inv);
    (inv, mean)
}

/// Backward through [`block_forward`], in place: `d` holds the gradient at the block's output
/// `out` and becomes the gradient at its input `z`. LayerNorm parameter gradients are added to
/// `norm_grads` when given. One pass over memory with LayerNorm, as the forward.
pub fn block_backward(
    d: &mut [f32],
    width: usize,
    norm: Option<&HostNorm>,
    act: Activation,
    tape: &BlockTape,
    out: &[f32],
    norm_grads: Option<&mut NormGrads>,
) {
    let Some(norm) = norm else {
        let input = if keeps_input(act) { &tape.pre[..] } else { out };
        return par_rows(d, width, |first, block| {
            activation_backward(act, &input[first * width..][..block.len()], block);
        });
    };
    let want = norm_grads.is_some();
    // Per block: [Σ dy ⊙ x̂ (γ's gradient), Σ dy (β's)], dy the gradient at the LayerNorm output.
    let len = if want { 2 * width } else { 0 };
    let sums = par_rows_sum(d, width, len, |first, block| {
        let mut sums = vec![0.0f32; len];
        let mut pre = vec![0.0f32; width];
        for (i, dy) in block.chunks_exact_mut(width).enumerate() {
            let r = first + i;
            let xhat = &tape.xhat[r * width..(r + 1) * width];
            pre.copy_from_slice(xhat);
            norm.apply(&mut pre);
            activation_backward(act, &pre, dy);
            if want {
                let (g, b) = sums.split_at_mut(width);
                vectorized!(accumulate_norm_grads(g, b, dy, xhat));
            }
            vectorized!(layer_norm_row_backward(dy, xhat, &norm.gamma, tape.rstd[r]));
        }
        sums
    });
    if let Some(g) = norm_grads {
        let (gamma, beta) = sums.split_at(width);
        add_to(&mut g.gamma, gamma);
        if let Some(b) = g.beta.as_mut() {
            add_to(b, beta);
        }
    }
}

/// `g += dy ⊙ x̂`, `b += dy`.
#[inline(always)]
fn accumulate_norm_grads(g: &mut [f32], b: &mut [f32], dy: &[f32], xhat: &[f32]) {
    for (((g, b), d), x) in g.iter_mut().zip(b.iter_mut()).zip(dy).zip(xhat) {
        *g += d * x;
        *b += d;
    }
}

/// `dy → dz` for one row: `dz = (1/σ)(d̂ − mean(d̂) − x̂ · mean(d̂ ⊙ x̂))`, `d̂ = dy ⊙ γ`.
#[inline(always)]
fn layer_norm_row_backward(dy: &mut [f32], xhat: &[f32], gamma: &[f32], inv: f32) {
    let w = dy.len() as f32;
    dy.iter_mut().zip(gamma).for_each(|(d, g)| *d *= g);
    let mean_d = lane_sum(dy, |v| v) / w;
    let mean_dx = lane_dot(dy, xhat) / w;
    dy.iter_mut()
        .zip(xhat)
        .for_each(|(d, x)| *d = inv * (*d - mean_d - x * mean_dx));
}

// ---------------------------------------------------------------------------------------------
// Gradients and their registration for burn's optimizers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct LinearGrads {
    pub w: Vec<f32>,
    pub b: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
pub struct NormGrads {
    pub gamma: Vec<f32>,
    pub beta: Option<Vec<f32>>,
}

impl NormGrads {
    pub fn zeros(norm: &HostNorm) -> Self {
        Self {
            gamma: vec![0.0; norm.gamma.len()],
            beta: norm.beta.as_ref().map(|b| vec![0.0; b.len()]),
        }
    }
}

fn add_optional(total: &mut Option<Vec<f32>>, part: Option<Vec<f32>>) {
    if let (Some(total), Some(part)) = (total.as_mut(), part) {
        add_to(total, &part);
    }
}

impl AddAssign for LinearGrads {
    fn add_assign(&mut self, part: Self) {
        add_to(&mut self.w, &part.w);
        add_optional(&mut self.b, part.b);
    }
}

impl AddAssign for NormGrads {
    fn add_assign(&mut self, part: Self) {
        add_to(&mut self.gamma, &part.gamma);
        add_optional(&mut self.beta, part.beta);
    }
}

fn register2(into: &mut GradientsParams, param: &Param<Tensor<2>>, grad: Vec<f32>) {
    let value = param.val();
    let [rows, cols] = value.dims();
    let device = value.device().without_autodiff();
    into.register(param.id, super::tensor2(&grad, rows, cols, &device));
}

fn register1(into: &mut GradientsParams, param: &Param<Tensor<1>>, grad: Vec<f32>) {
    let value = param.val();
    let device = value.device().without_autodiff();
    let n = grad.len();
    into.register(param.id, super::tensor2(&grad, 1, n, &device).reshape([n]));
}

impl LinearGrads {
    /// Register for `linear`'s parameters (replacing anything registered for them).
    pub fn register(self, linear: &Linear, into: &mut GradientsParams) {
        register2(into, &linear.weight, self.w);
        if let (Some(param), Some(b)) = (&linear.bias, self.b) {
            register1(into, param, b);
        }
    }
}

impl NormGrads {
    pub fn register(self, norm: &LayerNorm, into: &mut GradientsParams) {
        register1(into, &norm.gamma, self.gamma);
        if let (Some(param), Some(b)) = (&norm.beta, self.beta) {
            register1(into, param, b);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The MLP
// ---------------------------------------------------------------------------------------------

/// A host copy of an [`Mlp`]'s parameters.
#[derive(Debug, Clone)]
pub struct HostMlp {
    pub hidden: Vec<(HostLinear, Option<HostNorm>)>,
    pub output: HostLinear,
    pub activation: Activation,
}

/// What [`HostMlp::backward`] needs from the forward pass: each linear layer's input and each
/// hidden block's tape.
#[derive(Debug)]
pub struct MlpTape {
    n: usize,
    inputs: Vec<Vec<f32>>,
    blocks: Vec<BlockTape>,
}

impl MlpTape {
    /// The network's input.
    pub fn input(&self) -> &[f32] {
        &self.inputs[0]
    }

    /// The tape of the rows `rows` only, in that order: a backward pass over a subset of rows.
    pub fn select(&self, rows: &[usize]) -> MlpTape {
        let gather = |x: &[f32]| gather_rows(x, self.n, rows);
        MlpTape {
            n: rows.len(),
            inputs: self.inputs.iter().map(|x| gather(x)).collect(),
            blocks: self
                .blocks
                .iter()
                .map(|b| BlockTape {
                    xhat: gather(&b.xhat),
                    rstd: gather(&b.rstd),
                    pre: gather(&b.pre),
                })
                .collect(),
        }
    }
}

/// The rows `rows` of a row-major buffer of `n` rows (empty stays empty).
fn gather_rows(x: &[f32], n: usize, rows: &[usize]) -> Vec<f32> {
    let width = x.len() / n.max(1);
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&x[r * width..(r + 1) * width]);
    }
    out
}

#[derive(Debug, Clone)]
pub struct MlpGrads {
    pub hidden: Vec<(LinearGrads, Option<NormGrads>)>,
    pub output: LinearGrads,
}

impl MlpGrads {
    /// Register for `mlp`'s parameters (the module these gradients were computed for).
    pub fn register(self, mlp: &Mlp, into: &mut GradientsParams) {
        for (i, (linear, norm)) in self.hidden.into_iter().enumerate() {
            linear.register(&mlp.layers[i], into);
            if let (Some(g), Some(module)) = (norm, mlp.norms.get(i)) {
                g.register(module, into);
            }
        }
        self.output.register(&mlp.output, into);
    }
}

impl AddAssign for MlpGrads {
    fn add_assign(&mut self, part: Self) {
        for ((linear, norm), (part_linear, part_norm)) in self.hidden.iter_mut().zip(part.hidden) {
            *linear += part_linear;
            if let (Some(norm), Some(part_norm)) = (norm.as_mut(), part_norm) {
                *norm += part_norm;
            }
        }
        self.output += part.output;
    }
}

impl HostMlp {
    pub fn from_mlp(mlp: &Mlp) -> Self {
        Self {
            hidden: mlp
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    (
                        HostLinear::from_linear(l),
                        mlp.norms.get(i).map(HostNorm::from_layer_norm),
                    )
                })
                .collect(),
            output: HostLinear::from_linear(&mlp.output),
            activation: mlp.activation,
        }
    }

    pub fn d_in(&self) -> usize {
        self.hidden
            .first()
            .map_or(self.output.d_in, |(l, _)| l.d_in)
    }

    pub fn d_out(&self) -> usize {
        self.output.d_out
    }

    /// Output `[n, d_out]` for input `x` `[n, d_in]`.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut h: Option<Vec<f32>> = None;
        for (linear, norm) in &self.hidden {
            let mut z = linear.product(h.as_deref().unwrap_or(x), n);
            let bias = linear.b.as_deref();
            block_forward(
                &mut z,
                linear.d_out,
                bias,
                norm.as_ref(),
                self.activation,
                None,
            );
            h = Some(z);
        }
        self.output.forward(h.as_deref().unwrap_or(x), n)
    }

    /// [`HostMlp::forward`] keeping what the backward pass needs.
    pub fn forward_tape(&self, x: Vec<f32>, n: usize) -> (Vec<f32>, MlpTape) {
        let mut inputs = vec![x];
        let mut blocks = Vec::with_capacity(self.hidden.len());
        for (linear, norm) in &self.hidden {
            let mut z = linear.product(inputs.last().expect("input"), n);
            let mut tape = BlockTape::default();
            block_forward(
                &mut z,
                linear.d_out,
                linear.b.as_deref(),
                norm.as_ref(),
                self.activation,
                Some(&mut tape),
            );
            blocks.push(tape);
            inputs.push(z);
        }
        let out = self.output.forward(inputs.last().expect("input"), n);
        (out, MlpTape { n, inputs, blocks })
    }

    /// Backward from `d_out` (the gradient at the output, `[n, d_out]`): the gradient at the
    /// input (`[n, d_in]`, when `input_grad`) and the parameter gradients (when `param_grads`).
    pub fn backward(
        &self,
        tape: &MlpTape,
        d_out: &[f32],
        input_grad: bool,
        param_grads: bool,
    ) -> (Option<Vec<f32>>, Option<MlpGrads>) {
        let n = tape.n;
        let layers = self.hidden.len();
        let output = param_grads.then(|| self.output.grads(&tape.inputs[layers], d_out, n));
        if layers == 0 {
            return (input_grad.then(|| self.output.input_grad(d_out, n)), {
                output.map(|output| MlpGrads {
                    hidden: Vec::new(),
                    output,
                })
            });
        }
        let mut d = self.output.input_grad(d_out, n);
        let mut hidden = Vec::with_capacity(layers);
        for i in (0..layers).rev() {
            let (linear, norm) = &self.hidden[i];
            let mut norm_grads = norm.as_ref().filter(|_| param_grads).map(NormGrads::zeros);
            block_backward(
                &mut d,
                linear.d_out,
                norm.as_ref(),
                self.activation,
                &tape.blocks[i],
                &tape.inputs[i + 1],
                norm_grads.as_mut(),
            );
            if param_grads {
                hidden.push((linear.grads(&tape.inputs[i], &d, n), norm_grads));
            }
            if i > 0 || input_grad {
                d = linear.input_grad(&d, n);
            }
        }
        hidden.reverse();
        (
            input_grad.then_some(d),
            output.map(|output| MlpGrads { hidden, output }),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Host results inside an autodiff graph
// ---------------------------------------------------------------------------------------------

/// `[rows, cols]` host data as a leaf of `device`'s autodiff graph that requires a gradient:
/// write the loss on it with tensors, and read the gradient after backward with [`leaf_grad`].
pub fn leaf(data: &[f32], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    super::tensor2(data, rows, cols, device).require_grad()
}

/// The gradient of a [`leaf`] after `loss.backward()`, as host data (zeros when the loss does
/// not depend on it).
pub fn leaf_grad(leaf: &Tensor<2>, grads: &Gradients) -> Vec<f32> {
    match leaf.grad(grads) {
        Some(g) => super::to_vec(g),
        None => vec![0.0; leaf.dims().iter().product()],
    }
}

/// A forward pass run in [`Shards`] and entered into the autodiff graph as one [`leaf`], each
/// shard's tape kept for its backward pass.
pub struct ShardedLeaf<T> {
    leaf: Tensor<2>,
    cols: usize,
    shards: Shards,
    tapes: Vec<T>,
}

impl<T: Send + Sync> ShardedLeaf<T> {
    /// `forward(rows)` — the output (`[rows, cols]`) and the tape — for each shard of `n` rows;
    /// the outputs, in order, become a leaf on `device`.
    pub fn record(
        n: usize,
        cols: usize,
        device: &Device,
        forward: impl Fn(Range<usize>) -> (Vec<f32>, T) + Sync,
    ) -> Self {
        let shards = Shards::of(n);
        let (outs, tapes): (Vec<_>, Vec<_>) =
            shards.map(|_, rows| forward(rows)).into_iter().unzip();
        Self {
            leaf: leaf(&outs.concat(), n, cols, device),
            cols,
            shards,
            tapes,
        }
    }

    /// The recorded output (a leaf: write the loss on it).
    pub fn leaf(&self) -> Tensor<2> {
        self.leaf.clone()
    }

    /// After `loss.backward()`: `backward(tape, rows, d)` for each shard, `d` its rows of the
    /// leaf's gradient; the shards' parameter gradients summed in shard order (the same sum on
    /// every run).
    pub fn backward<G: AddAssign + Send>(
        &self,
        grads: &Gradients,
        backward: impl Fn(&T, Range<usize>, &[f32]) -> G + Sync,
    ) -> G {
        let d = leaf_grad(&self.leaf, grads);
        let cols = self.cols;
        self.shards
            .map(|i, rows| {
                let d = &d[rows.start * cols..rows.end * cols];
                backward(&self.tapes[i], rows, d)
            })
            .into_iter()
            .reduce(|mut total, part| {
                total += part;
                total
            })
            .expect("at least one shard")
    }
}

/// An [`Mlp`] inside one training step. With the host [`Engine`] its passes run on the host, [`Shards`] of the batch on their own threads, and a recorded
/// forward pass enters the autodiff graph as a [`leaf`]; elsewhere it is burn's module. The loss
/// is written once, with tensors, for both.
pub struct TrainingMlp<'a> {
    mlp: &'a Mlp,
    host: Option<HostMlp>,
    recorded: RefCell<Option<ShardedLeaf<MlpTape>>>,
}

impl<'a> TrainingMlp<'a> {
    /// `mlp` as `engine` runs it.
    pub fn new(mlp: &'a Mlp, engine: Engine) -> Self {
        Self {
            mlp,
            host: engine.is_host().then(|| HostMlp::from_mlp(mlp)),
            recorded: RefCell::new(None),
        }
    }

    /// The output for `x` (`[n, d_in]`), differentiable w.r.t. the parameters. On the host one
    /// such pass is recorded at a time: the last before [`TrainingMlp::register_grads`] counts.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let Some(host) = &self.host else {
            return self.mlp.forward(x);
        };
        let (device, [n, d_in]) = (x.device(), x.dims());
        let x = super::to_vec(x);
        let pass = ShardedLeaf::record(n, host.d_out(), &device, |rows| {
            host.forward_tape(x[rows.start * d_in..rows.end * d_in].to_vec(), rows.len())
        });
        let leaf = pass.leaf();
        *self.recorded.borrow_mut() = Some(pass);
        leaf
    }

    /// The output for `x` without a gradient (a target).
    pub fn eval(&self, x: Tensor<2>) -> Tensor<2> {
        let Some(host) = &self.host else {
            return self.mlp.forward(x).detach();
        };
        let (device, [n, d_in]) = (x.device(), x.dims());
        let x = super::to_vec(x);
        let out = Shards::of(n)
            .map_concat(|_, rows| host.forward(&x[rows.start * d_in..rows.end * d_in], rows.len()));
        super::tensor2(&out, n, host.d_out(), &device)
    }

    /// After `loss.backward()`: the gradients of the network's parameters, registered into
    /// `into` (taken out of `grads` for burn's module).
    pub fn register_grads(&self, grads: &mut Gradients, into: &mut GradientsParams) {
        if self.host.is_none() {
            return take_gradients(self.mlp, grads, into);
        }
        let (Some(host), Some(pass)) = (&self.host, self.recorded.borrow_mut().take()) else {
            return;
        };
        pass.backward(grads, |tape, _, d| {
            let (_, g) = host.backward(tape, d, false, true);
            g.expect("parameter gradients")
        })
        .register(self.mlp, into);
    }
}

/// Moves `module`'s parameter gradients from `grads` into `into` (burn's own conversion makes a
/// new [`GradientsParams`]; a step registers several networks' gradients into one).
pub fn take_gradients<M: Module>(module: &M, grads: &mut Gradients, into: &mut GradientsParams) {
    module.visit(&mut TakeGradients { grads, into });
}

struct TakeGradients<'g> {
    grads: &'g mut Gradients,
    into: &'g mut GradientsParams,
}

impl ModuleVisitor for TakeGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        if let Some(grad) = param.val().grad_remove(self.grads) {
            self.into.register(param.id, grad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{tensor2, to_vec, MlpConfig};
    use offrl_kernels::testing::assert_close;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    /// A step's networks on the host (sharded passes recorded as leaves) give burn's outputs and
    /// parameter gradients.
    #[test]
    fn training_mlp_on_the_host_equals_the_module() {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (act, ln) in [(Activation::Relu, false), (Activation::Gelu, true)] {
            let mlp = MlpConfig::new(6, 2)
                .with_width(32)
                .with_activation(act)
                .with_layer_norm(ln)
                .init(&device);
            let n = 157;
            let (x, target, upstream) = (
                random(&mut rng, n * 6),
                random(&mut rng, n * 6),
                random(&mut rng, n * 2),
            );
            let run = |net: &TrainingMlp| {
                let x = tensor2(&x, n, 6, &device);
                let out = net.forward(x.clone());
                let fixed = net.eval(tensor2(&target, n, 6, &device));
                let loss = (out.clone() * tensor2(&upstream, n, 2, &device)).sum()
                    + (out.clone() * fixed.clone()).sum();
                let mut grads = GradientsParams::new();
                net.register_grads(&mut loss.backward(), &mut grads);
                let weights: Vec<Vec<f32>> = mlp
                    .layers
                    .iter()
                    .chain([&mlp.output])
                    .map(|l| to_vec(grads.get::<2>(l.weight.id).expect("weight gradient")))
                    .collect();
                (to_vec(out), to_vec(fixed), weights)
            };
            let host = TrainingMlp::new(&mlp, Engine::for_device(&device));
            assert!(host.host.is_some(), "the CPU backend runs it on the host");
            let module = TrainingMlp {
                host: None,
                ..TrainingMlp::new(&mlp, Engine::for_device(&device))
            };
            let (got, want) = (run(&host), run(&module));
            assert_close(&got.0, &want.0, 1e-5, "forward");
            assert_close(&got.1, &want.1, 1e-5, "eval");
            for (i, (a, b)) in got.2.iter().zip(&want.2).enumerate() {
                assert_close(a, b, 1e-4, &format!("{act:?} layer {i} weight gradient"));
            }
        }
    }

    /// Host forward, input gradient and parameter gradients equal burn's forward and autodiff,
    /// for every activation, with and without LayerNorm, above and below the threaded GEMM size.
    #[test]
    fn mlp_forward_and_backward_equal_burn_autodiff() {
        let device = Device::flex().autodiff();
        for (act, ln, n) in [
            (Activation::Gelu, true, 300),
            (Activation::Relu, false, 40),
            (Activation::Mish, true, 7),
            (Activation::Tanh, false, 7),
            (Activation::Gelu, true, 2100),
        ] {
            crate::backend::seed(&device, 5);
            let width = if n > 1000 { 64 } else { 16 };
            let mlp = MlpConfig::new(5, 3)
                .with_width(width)
                .with_hidden(2)
                .with_activation(act)
                .with_layer_norm(ln)
                .init(&device);
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
            let x = random(&mut rng, n * 5);
            let upstream = random(&mut rng, n * 3);
            // burn: loss = Σ out ⊙ upstream, so d loss / d out = upstream.
            let xt = tensor2(&x, n, 5, &device).require_grad();
            let out = mlp.forward(xt.clone());
            let loss = (out.clone() * tensor2(&upstream, n, 3, &device)).sum();
            let mut grads = loss.backward();
            let dx_burn = to_vec(xt.grad(&grads).unwrap());
            let burn_params = GradientsParams::from_module(&mut grads, &mlp);

            let host = HostMlp::from_mlp(&mlp);
            assert_close(&host.forward(&x, n), &to_vec(out), 1e-5, "forward");
            let (_, tape) = host.forward_tape(x.clone(), n);
            let (dx, g) = host.backward(&tape, &upstream, true, true);
            assert_close(&dx.unwrap(), &dx_burn, 1e-5, "input gradient");
            let mut host_params = GradientsParams::new();
            g.unwrap().register(&mlp, &mut host_params);
            let mut ids = Vec::new();
            mlp.visit(&mut CollectIds(&mut ids));
            assert_eq!(host_params.len(), burn_params.len());
            for (id, dims) in ids {
                let (a, b) = match dims {
                    2 => (
                        to_vec(host_params.get::<2>(id).unwrap()),
                        to_vec(burn_params.get::<2>(id).unwrap()),
                    ),
                    _ => (
                        to_vec(host_params.get::<1>(id).unwrap()),
                        to_vec(burn_params.get::<1>(id).unwrap()),
                    ),
                };
                assert_close(&a, &b, 1e-5, &format!("{act:?} ln={ln} n={n} parameter"));
            }
            // Only the input gradient: the same, without parameter gradients.
            let (dx2, none) = host.backward(&tape, &upstream, true, false);
            assert!(none.is_none());
            assert_close(&dx2.unwrap(), &dx_burn, 1e-5, "input gradient only");
        }
    }

    struct CollectIds<'a>(&'a mut Vec<(burn::module::ParamId, usize)>);

    impl burn::module::ModuleVisitor for CollectIds<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push((param.id, D));
        }
    }

    #[test]
    fn leaf_gradients_flow_back() {
        let device = Device::flex().autodiff();
        let x = leaf(&[1.0, -2.0, 3.0, 0.5], 2, 2, &device);
        let loss = x.clone().square().sum();
        let g = leaf_grad(&x, &loss.backward());
        assert_eq!(g, vec![2.0, -4.0, 6.0, 1.0]);
    }
}
