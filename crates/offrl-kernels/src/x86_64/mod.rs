//! Hand-written x86-64 kernels (AVX-512F). Callers check the CPU before each call: every entry
//! point is an `unsafe fn` with the feature enabled.

pub mod narrow;
pub mod panel;
