//! Backend selection. burn 0.22 dispatches at run time: tensors (`Tensor<D>`) and modules are
//! written once, and the [`Device`] they live on decides which backend executes them. This module
//! maps the CLI's `--backend` choice to a device.

use burn::tensor::Device;

use crate::error::{Error, Result};

/// Set up the process for the CPU kernels: [`keep_freed_memory`] and [`compute_on_this_thread`].
/// Call once at start-up, on the thread that will drive the computation: the binary and the
/// benches do.
pub fn init_cpu_runtime() {
    keep_freed_memory();
    compute_on_this_thread();
}

/// Make the calling thread one of the global thread pool's workers (if the pool has not been
/// built yet; returns whether it was).
///
/// The kernels split each GEMM and row pass over rayon's pool. Called from a thread outside the
/// pool, every such call hands its work to the pool and puts the caller to sleep until it is done
/// (a futex wake-up each way); from a worker it is an in-place split with work stealing (the
/// gain measured: `benches/RESULTS.md`, "Measurements behind the design constants"). The pool
/// keeps one thread per core, this one included.
pub fn compute_on_this_thread() -> bool {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .is_ok()
}

/// Keep freed memory for reuse instead of handing it back to the kernel at once (glibc; a no-op
/// elsewhere). Call once at start-up ([`init_cpu_runtime`] does).
///
/// The CPU kernels allocate a few MiB per layer and diffusion step. glibc returns such blocks to
/// the kernel when they are freed, so each next allocation page-faults its memory in again: that
/// was the largest single cost of sampling 4096 chains (`benches/RESULTS.md`). With this,
/// blocks up to 32 MiB come from the heap and the heap is trimmed only beyond 1 GiB of free
/// space, so the resident set stays near its peak between steps instead of shrinking.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// A compute backend the binary can run on (those not compiled in give a clear error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn-flex: pure-Rust CPU backend (SIMD + rayon). The default.
    #[default]
    Flex,
    /// LibTorch on the CPU (feature `tch`).
    Tch,
    /// LibTorch on CUDA device 0 (feature `tch`).
    TchCuda,
    /// CubeCL CUDA (feature `cuda`).
    Cuda,
    /// CubeCL wgpu (feature `wgpu`).
    Wgpu,
}

impl BackendKind {
    /// The name the command line uses (`--backend NAME`).
    /// The backend named `name` (as [`BackendKind::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Flex, Self::Tch, Self::TchCuda, Self::Cuda, Self::Wgpu]
            .into_iter()
            .find(|b| b.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Tch => "tch",
            BackendKind::TchCuda => "tch-cuda",
            BackendKind::Cuda => "cuda",
            BackendKind::Wgpu => "wgpu",
        }
    }

    /// The inference device of this backend.
    pub fn device(self) -> Result<Device> {
        match self {
            BackendKind::Flex => Ok(Device::flex()),
            #[cfg(feature = "tch")]
            #[allow(deprecated)] // burn marks burn-tch deprecated; it is still the LibTorch path.
            BackendKind::Tch => Ok(Device::libtorch()),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            BackendKind::TchCuda => Ok(Device::libtorch_cuda(0usize)),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => Ok(Device::cuda(0usize)),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => Ok(Device::default()),
            #[allow(unreachable_patterns)]
            other => Err(Error::Config(format!(
                "backend `{other:?}` is not compiled into this binary; rebuild with the matching cargo \
                 feature (tch / cuda / wgpu)"
            ))),
        }
    }

    /// The training (autodiff) device of this backend.
    pub fn train_device(self) -> Result<Device> {
        Ok(self.device()?.autodiff())
    }
}

/// Seed the random generator of the device's backend (used by burn's parameter initialisers).
pub fn seed(device: &Device, seed: u64) {
    device.seed(seed);
}

/// What runs the networks' passes: offrl's host kernels or burn's tensor operations. Decided once
/// per model or algorithm, from its device, when it is built ([`Engine::for_device`]), and held as
/// a value from then on; the types that run networks ([`crate::nn::host::TrainingMlp`], the
/// ε-network's executors) take it and hide the difference behind one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The host kernels ([`crate::nn::host`] over the `offrl-kernels` crate), on burn-flex's CPU
    /// device: each layer one GEMM and one fused pass, burn's autodiff for the loss only.
    Host,
    /// burn's own modules and autodiff: every other device, and the CPU when `OFFRL_BURN_ONLY`
    /// is set in the environment (to compare the two engines on the same numbers).
    Burn,
}

impl Engine {
    /// The engine for `device` (autodiff or not). The environment is read once per process.
    pub fn for_device(device: &Device) -> Self {
        static BURN_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let burn_only = *BURN_ONLY.get_or_init(|| std::env::var_os("OFFRL_BURN_ONLY").is_some());
        if !burn_only && device.clone().without_autodiff() == Device::flex() {
            Engine::Host
        } else {
            Engine::Burn
        }
    }

    /// Whether the host kernels run the networks.
    pub fn is_host(self) -> bool {
        self == Engine::Host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "cli")]
    #[test]
    fn names_are_the_command_lines() {
        use clap::ValueEnum;
        for b in BackendKind::value_variants() {
            assert_eq!(b.to_possible_value().unwrap().get_name(), b.name());
        }
    }
}
