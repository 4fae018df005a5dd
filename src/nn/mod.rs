//! Network building blocks shared by every model: one MLP, one time embedding.

mod mlp;

pub use mlp::{Activation, Mlp, MlpConfig};
