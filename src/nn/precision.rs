//! Numeric precision of a network's GEMMs (convolutions and dense layers).
//!
//! - `f32`: every kernel reads and sums f32. The autotuner never offers the
//!   cooperative-matrix kernels, whose operands are f16.
//! - `mixed`: the GEMMs may round their operands (activations, weights, output gradients) to
//!   f16 when they stage them, summing in f32: the `coop` variants of conv2d and dense,
//!   on cooperative matrices where the adapter has them (`CoopBuild::Hardware`), else their
//!   plain-WGSL build (`CoopBuild::Emulated`, slow). They are the untuned default, and the
//!   autotuner may still pick an f32 kernel for a layer where that is faster. Everything
//!   else (BatchNorm, activations, pooling, the loss, the optimizer, master weights and
//!   moments) stays f32. Training scales the loss so small gradients survive the f16
//!   rounding (nn::loss_scale).
//! - `auto` (the binaries' default): mixed where the adapter has cooperative matrices (where
//!   it pays), f32 elsewhere.
//!
//! Tensors are stored in f32 in both modes: f16 storage of activations is not built yet.

use crate::gpu::coop::CoopBuild;
use crate::gpu::Gpu;
use serde::{Deserialize, Serialize};

/// The precision a network is built with (`PrecisionChoice::resolve` picks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Mixed,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Mixed => "mixed",
        }
    }

    /// The build of the cooperative-matrix kernels a layer of this precision records when
    /// they are chosen: mixed runs the emulated build where the adapter has no cooperative
    /// matrices; f32 only ever runs them when forced (`MIEN_CONV_KERNELS=coop`, tests), and
    /// then the hardware build.
    pub fn coop_build(self, gpu: &Gpu) -> CoopBuild {
        match self {
            Precision::Mixed if !gpu.has_coop() => CoopBuild::Emulated,
            _ => CoopBuild::Hardware,
        }
    }

    /// Whether the autotuner may offer (and the untuned default is) the coop kernels.
    pub fn offers_coop(self) -> bool {
        self == Precision::Mixed
    }

    /// A suffix for autotune keys (mixed layers choose among more candidates than f32 ones)
    /// and benchmark names.
    pub fn key_suffix(self) -> &'static str {
        match self {
            Precision::F32 => "",
            Precision::Mixed => " mixed",
        }
    }

    /// "mixed (f16 GEMM operands on cooperative matrices, f32 sums)", for summaries.
    pub fn describe(self, gpu: &Gpu) -> String {
        match self {
            Precision::F32 => "f32".to_string(),
            Precision::Mixed => match self.coop_build(gpu) {
                CoopBuild::Hardware => "mixed (f16 GEMM operands on cooperative matrices, f32 sums, dynamic loss scaling)".to_string(),
                CoopBuild::Emulated => "mixed (f16 GEMM operands in plain WGSL: no cooperative matrices here, f32 sums, dynamic loss scaling)".to_string(),
            },
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asks for (`--precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    F32,
    Mixed,
    #[default]
    Auto,
}

impl PrecisionChoice {
    /// What config files from before this setting mean: f32.
    pub fn legacy() -> PrecisionChoice {
        PrecisionChoice::F32
    }

    pub fn name(self) -> &'static str {
        match self {
            PrecisionChoice::F32 => "f32",
            PrecisionChoice::Mixed => "mixed",
            PrecisionChoice::Auto => "auto",
        }
    }

    /// The precision this choice means on `gpu`, and a warning where it is not what was
    /// asked for or runs slowly (see `decide`).
    pub fn resolve(self, gpu: &Gpu) -> (Precision, Option<String>) {
        let (p, why) = decide(self, gpu.has_f16(), gpu.has_coop());
        (p, why.map(|w| format!("adapter {:?}: {w}", gpu.info().name)))
    }

    /// The precision this choice means on `gpu`, logging `resolve`'s warning if any.
    pub fn pick(self, gpu: &Gpu) -> Precision {
        let (p, why) = self.resolve(gpu);
        if let Some(w) = why {
            log::warn!("--precision {}: {w}", self.name());
        }
        p
    }

    /// The same choice with `auto` replaced by what it means on `gpu` (what a run records in
    /// its config.json, so that it resumes with the same numerics); warns as `pick` does.
    pub fn resolved(self, gpu: &Gpu) -> PrecisionChoice {
        match self.pick(gpu) {
            Precision::F32 => PrecisionChoice::F32,
            Precision::Mixed => PrecisionChoice::Mixed,
        }
    }
}

impl std::fmt::Display for PrecisionChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PrecisionChoice {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<PrecisionChoice> {
        match s {
            "f32" => Ok(PrecisionChoice::F32),
            "mixed" => Ok(PrecisionChoice::Mixed),
            "auto" => Ok(PrecisionChoice::Auto),
            _ => Err(crate::Error::new(format!("precision {s:?}: expected f32, mixed or auto"))),
        }
    }
}

/// The precision `choice` means on an adapter with (`f16`) f16 shaders and (`coop`)
/// cooperative matrices, and why it differs from what was asked or will be slow: mixed
/// without f16 runs f32; mixed without cooperative matrices runs the plain-WGSL f16 GEMMs;
/// auto is mixed exactly where there are cooperative matrices.
pub fn decide(choice: PrecisionChoice, f16: bool, coop: bool) -> (Precision, Option<String>) {
    match choice {
        PrecisionChoice::F32 => (Precision::F32, None),
        PrecisionChoice::Auto => (if coop { Precision::Mixed } else { Precision::F32 }, None),
        PrecisionChoice::Mixed if !f16 => (Precision::F32, Some("mixed precision needs f16 shaders (wgpu SHADER_F16), which this adapter does not offer: running f32".to_string())),
        PrecisionChoice::Mixed if !coop => (
            Precision::Mixed,
            Some("no cooperative matrices: the mixed-precision GEMMs run in plain WGSL (f16 operands, f32 sums), slower than the f32 kernels here; --precision auto would pick f32".to_string()),
        ),
        PrecisionChoice::Mixed => (Precision::Mixed, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_resolve_by_what_the_adapter_offers() {
        use PrecisionChoice::*;
        // (choice, f16, coop) -> precision, warned?
        let cases = [
            (F32, true, true, Precision::F32, false),
            (Auto, true, true, Precision::Mixed, false),
            (Auto, true, false, Precision::F32, false),
            (Auto, false, false, Precision::F32, false),
            (Mixed, true, true, Precision::Mixed, false),
            (Mixed, true, false, Precision::Mixed, true),
            (Mixed, false, false, Precision::F32, true),
        ];
        for (choice, f16, coop, want, warned) in cases {
            let (got, why) = decide(choice, f16, coop);
            assert_eq!((got, why.is_some()), (want, warned), "{choice} f16={f16} coop={coop}: {why:?}");
        }
        assert!(decide(Mixed, false, false).1.unwrap().contains("SHADER_F16"));
        assert!(decide(Mixed, true, false).1.unwrap().contains("auto would pick f32"));
    }

    #[test]
    fn names_parse_back_and_old_configs_mean_f32() {
        for c in [PrecisionChoice::F32, PrecisionChoice::Mixed, PrecisionChoice::Auto] {
            assert_eq!(c.name().parse::<PrecisionChoice>().unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.name()));
        }
        let e = "half".parse::<PrecisionChoice>().unwrap_err().to_string();
        assert!(e.contains("half") && e.contains("f32, mixed or auto"), "{e}");
        assert_eq!(PrecisionChoice::legacy(), PrecisionChoice::F32);
    }
}
