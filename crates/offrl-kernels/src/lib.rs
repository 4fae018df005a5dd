//! offrl's CPU kernels, on plain row-major `f32` buffers: the one place of the project that holds
//! `unsafe` arithmetic and instruction-set code. Nothing here knows a tensor library or a network;
//! the layers (`offrl::nn::host`) are written on top of these functions.
//!
//! - [`layout`]: the buffers the kernels read ([`Mat`], [`Panels`]);
//! - [`mod@gemm`]: matrix products — the `gemm` crate (what burn-flex itself uses) for the general
//!   case, and kernels of this crate where it falls short: weights packed once into column
//!   [`Panels`] for the hidden layers, two-to-four-column outputs for the heads;
//! - [`parallel`]: how a pass is spread over rayon's pool — row blocks, one [`Shards`] shard per
//!   thread for a training batch, and the per-thread flag that keeps a shard's kernels unsplit;
//! - [`math`]: element-wise and reduction kernels (GELU, erf, tanh, exp; lane sums), compiled for
//!   AVX-512 or AVX2 + FMA and picked at run time ([`vectorized!`]);
//! - one folder per instruction set for its hand-written kernels (`x86_64/`; other CPUs take the
//!   portable paths, and a NEON folder would sit beside it).
//!
//! `cargo bench -p offrl-kernels` measures the products against the vector units' ceiling.

pub mod gemm;
pub mod layout;
pub mod math;
pub mod parallel;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use gemm::{gemm, panel_product, panel_product_into, product};
pub use layout::{Mat, Panels};
pub use math::{
    add_column_sums, add_rows, add_to, erf, gelu, gelu_grad, lane_dot, lane_sum, tanh, tanh_all,
};
pub use parallel::{join, new_rows, on_this_thread, par_rows, par_rows_sum, par_rows_with, Shards};
