//! Cooperative matrices (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX: tensor cores): which
//! configurations an adapter offers, and what the `*_coop` kernels (shaders/coop/gemm.wgsl
//! and its bodies) need from the host: the build (real or emulated), its subgroup size and
//! the tile overrides.

use super::{Gpu, Shader};
use crate::{bail, ensure, Result};
use wgpu::CooperativeScalarType as Scalar;

/// One cooperative-matrix configuration: `t x t x t` tiles, A / B of `ab`, C / result of `cr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoopConfig {
    pub t: u32,
    pub ab: Scalar,
    pub cr: Scalar,
}

impl CoopConfig {
    /// What the `*_coop` kernels are written for (shaders/coop/real.wgsl).
    pub const KERNELS: CoopConfig = CoopConfig { t: 16, ab: Scalar::F16, cr: Scalar::F32 };

    /// Higher is better: f16 operands with f32 sums first, then f16 sums, then f32; 16 before 8.
    fn score(&self) -> u32 {
        let ty = match (self.ab, self.cr) {
            (Scalar::F16, Scalar::F32) => 30,
            (Scalar::F16, Scalar::F16) => 20,
            (Scalar::F32, Scalar::F32) => 10,
            _ => 0,
        };
        ty + self.t / 8
    }
}

fn scalar_name(s: Scalar) -> &'static str {
    match s {
        Scalar::F16 => "f16",
        Scalar::F32 => "f32",
        Scalar::I32 => "i32",
        Scalar::U32 => "u32",
    }
}

impl std::fmt::Display for CoopConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{0}x{0}x{0} {1}->{2}", self.t, scalar_name(self.ab), scalar_name(self.cr))
    }
}

/// The configurations of `props` that WGSL can spell (naga has `coop_mat8x8` and
/// `coop_mat16x16`, one size for A, B and C; float types; f16 only with `f16`), best first.
pub fn usable(props: &[wgpu::CooperativeMatrixProperties], f16: bool) -> Vec<CoopConfig> {
    let mut v: Vec<CoopConfig> = Vec::new();
    for p in props {
        let square = p.m_size == p.n_size && p.n_size == p.k_size && (p.m_size == 8 || p.m_size == 16);
        let float = matches!(p.ab_type, Scalar::F16 | Scalar::F32) && matches!(p.cr_type, Scalar::F16 | Scalar::F32) && !(p.ab_type == Scalar::F32 && p.cr_type == Scalar::F16);
        let needs_f16 = p.ab_type == Scalar::F16 || p.cr_type == Scalar::F16;
        let c = CoopConfig { t: p.m_size, ab: p.ab_type, cr: p.cr_type };
        if square && float && (f16 || !needs_f16) && !v.contains(&c) {
            v.push(c);
        }
    }
    v.sort_by_key(|c| std::cmp::Reverse(c.score()));
    v
}

/// Whether `Gpu::new` asks for cooperative matrices: the adapter offers the feature and a
/// usable configuration, and `MIEN_COOP` is not `0` / `off` (`1`, `on`, `auto` or unset:
/// where offered).
pub(super) fn wanted(adapter: &wgpu::Adapter, features: wgpu::Features) -> Result<bool> {
    let on = match std::env::var("MIEN_COOP").as_deref() {
        Err(_) | Ok("") | Ok("1") | Ok("on") | Ok("auto") => true,
        Ok("0") | Ok("off") => false,
        Ok(other) => bail!("MIEN_COOP={other:?}: expected 0 / off (never ask for cooperative matrices) or 1 / on / auto (where offered)"),
    };
    let offered = adapter.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
    let f16 = features.contains(wgpu::Features::SHADER_F16);
    Ok(on && offered && !usable(&adapter.cooperative_matrix_properties(), f16).is_empty())
}

/// Which build of a `*_coop` kernel: the real cooperative operations, or their plain-WGSL
/// stand-ins (shaders/coop/emulated.wgsl: same tiles, staging, indexing and f16 rounding;
/// any adapter with f16, slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoopBuild {
    Hardware,
    Emulated,
}

impl CoopBuild {
    pub fn name(self) -> &'static str {
        match self {
            CoopBuild::Hardware => "hardware",
            CoopBuild::Emulated => "emulated",
        }
    }

    /// Why this build cannot run on `gpu`, or None.
    pub fn unavailable(self, gpu: &Gpu) -> Option<String> {
        if !gpu.has_f16() {
            return Some(format!("the cooperative-matrix kernels need f16 shaders (wgpu SHADER_F16), which adapter {:?} does not offer", gpu.info().name));
        }
        if self == CoopBuild::Hardware && !gpu.has_coop() {
            return Some(format!(
                "adapter {:?} offers no {} cooperative matrices (offered: {:?}; subgroup sizes {}..{}); the emulated build runs anywhere with f16",
                gpu.info().name,
                CoopConfig::KERNELS,
                gpu.coop_configs().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                gpu.info().subgroup_min_size,
                gpu.info().subgroup_max_size
            ));
        }
        None
    }

    /// Error (naming the layer) unless this build runs on `gpu`.
    pub fn check(self, gpu: &Gpu, layer: &str) -> Result<()> {
        match self.unavailable(gpu) {
            Some(why) => bail!("layer {layer}: {why}"),
            None => Ok(()),
        }
    }

    /// The build of a kernel: `real` (shaders/coop/real.wgsl) or its `_emulated` twin.
    pub fn shader(self, real: Shader, emulated: Shader) -> Shader {
        match self {
            CoopBuild::Hardware => real,
            CoopBuild::Emulated => emulated,
        }
    }

    /// The SG override: the adapter's largest subgroup size (each group of SG invocations
    /// holds whole hardware subgroups), or the emulation's 32 lanes.
    pub fn subgroup(self, gpu: &Gpu) -> u32 {
        match self {
            CoopBuild::Hardware => gpu.info().subgroup_max_size,
            CoopBuild::Emulated => 32,
        }
    }
}

/// Block shape of a `*_coop` GEMM (the WM, WN, TM, TN, BK overrides): WM x WN subgroups, each
/// TM x TN tiles of 16 x 16, so a BM x BN = 16 WM TM x 16 WN TN block of C per workgroup,
/// stepping over the depth in slices of BK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoopTiles {
    pub wm: u32,
    pub wn: u32,
    pub tm: u32,
    pub tn: u32,
    pub bk: u32,
}

/// Tile side (CT in the shaders).
pub const CT: u32 = 16;

impl CoopTiles {
    /// 4 subgroups in 2 x 2, each (bm / 32) x (bn / 32) tiles: the probe's fastest layout
    /// (128 x 128, BK 32: 251 TFLOP/s on an H200) and its narrower cousins. `bm`, `bn` in
    /// 32, 64, 128.
    pub const fn square(bm: u32, bn: u32) -> CoopTiles {
        CoopTiles { wm: 2, wn: 2, tm: bm / 32, tn: bn / 32, bk: 32 }
    }

    /// The block for a `gm x gn` output: 128 rows (64 when there are no more), and 32, 64 or
    /// 128 columns, the fewest that cover `gn` (or 128).
    pub fn for_gemm(gm: usize, gn: usize) -> CoopTiles {
        let bm = if gm <= 64 { 64 } else { 128 };
        let bn = if gn <= 32 { 32 } else if gn <= 64 { 64 } else { 128 };
        CoopTiles::square(bm, bn)
    }

    pub fn bm(&self) -> u32 {
        self.wm * self.tm * CT
    }
    pub fn bn(&self) -> u32 {
        self.wn * self.tn * CT
    }

    /// Bytes of workgroup memory (sa, sb, sc and the info arrays; see gemm.wgsl).
    pub fn workgroup_bytes(&self) -> u32 {
        let (bm, bn, bk) = (self.bm(), self.bn(), self.bk);
        bm * (bk / 4 + 2) * 8 + bk * (bn / 4 + 2) * 8 + self.wm * self.wn * CT * CT * 4 + (bm + bn + bk) * 16
    }

    /// Error (naming the layer) unless the shape is one the kernels take (TM, TN in 1..=4, BK a
    /// positive multiple of 16) and the workgroup fits the adapter with `build`.
    pub fn check(&self, gpu: &Gpu, layer: &str, build: CoopBuild) -> Result<()> {
        ensure!(
            (1..=4).contains(&self.tm) && (1..=4).contains(&self.tn) && self.wm >= 1 && self.wn >= 1 && self.bk >= CT && self.bk.is_multiple_of(CT),
            "layer {layer}: cooperative-matrix tiles {self:?}: TM and TN must be 1 to 4, WM and WN positive, BK a positive multiple of {CT}"
        );
        let l = gpu.limits();
        let inv = self.wm * self.wn * build.subgroup(gpu);
        ensure!(
            inv <= l.max_compute_invocations_per_workgroup && inv <= l.max_compute_workgroup_size_x,
            "layer {layer}: cooperative-matrix tiles {self:?} need {inv} invocations a workgroup, over this adapter's limits (max_compute_invocations_per_workgroup={})",
            l.max_compute_invocations_per_workgroup
        );
        let bytes = self.workgroup_bytes();
        ensure!(
            bytes <= l.max_compute_workgroup_storage_size,
            "layer {layer}: cooperative-matrix tiles {self:?} need {bytes} bytes of workgroup memory, over max_compute_workgroup_storage_size={}",
            l.max_compute_workgroup_storage_size
        );
        Ok(())
    }

    /// The override constants of a `build` pipeline.
    pub fn constants(&self, gpu: &Gpu, build: CoopBuild) -> Vec<(&'static str, f64)> {
        vec![
            ("SG", build.subgroup(gpu) as f64),
            ("WM", self.wm as f64),
            ("WN", self.wn as f64),
            ("TM", self.tm as f64),
            ("TN", self.tn as f64),
            ("BK", self.bk as f64),
        ]
    }
}

/// Depth split of a GEMM with `blocks` workgroups per split and depth `gk`: about
/// `target` workgroups in all, at least `min_chunk` depth per split; returns (depth per
/// split, a multiple of `bk`; splits), every split non-empty.
pub fn depth_split(gk: usize, bk: usize, blocks: usize, target: usize, min_chunk: usize, want: Option<usize>) -> (usize, usize) {
    let by_size = gk.div_ceil(min_chunk.max(bk)).max(1);
    let splits = want.unwrap_or_else(|| target.div_ceil(blocks.max(1)).min(by_size)).clamp(1, gk.div_ceil(bk).max(1));
    let kchunk = gk.div_ceil(splits).div_ceil(bk) * bk;
    (kchunk, gk.div_ceil(kchunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_splits_cover_the_depth_once_in_whole_slices() {
        for (gk, bk, blocks, want) in [(1, 32, 1, None), (1000, 32, 4, None), (589824, 32, 8, None), (64, 32, 1, Some(5)), (100, 16, 1, Some(3)), (4608, 32, 8, None)] {
            let (kc, s) = depth_split(gk, bk, blocks, 256, 512, want);
            assert!(kc % bk == 0 && s >= 1, "{gk} {bk}: {kc} x {s}");
            assert!(kc * s >= gk && kc * (s - 1) < gk, "{gk} {bk}: {kc} x {s}");
        }
        assert_eq!(depth_split(64, 32, 1, 256, 512, Some(5)), (32, 2));
    }

    #[test]
    fn tile_shapes_for_small_and_large_gemms() {
        assert_eq!((CoopTiles::for_gemm(64, 7).bm(), CoopTiles::for_gemm(64, 7).bn()), (64, 32));
        let t = CoopTiles::for_gemm(589824, 256);
        assert_eq!((t.bm(), t.bn(), t.tm, t.tn), (128, 128, 4, 4));
        // the probe's 128 x 128 block: 10240 + 8704 + 4096 + 4608 bytes
        assert_eq!(t.workgroup_bytes(), 27648);
    }
}
