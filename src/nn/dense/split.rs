//! Depth-split variant of the dense layer's workgroup-memory tiled GEMM (`dense_tiled` with
//! grid z = split, then `dense_split_reduce`, both in shaders/dense.wgsl), f32 throughout.
//!
//! A dense layer has few rows (the batch) and long reductions: seed-cnn's 4608 -> 512 at
//! batch 64 is a forward GEMM of 64 x 512 outputs, 8 tiles of 64 x 64, each summing 4608
//! products per output, which leaves most of a GPU idle (0.7 TFLOP/s measured on an H200).
//! Here each split sums one slice of the depth into partials [splits, rows * columns], and
//! the reduce adds the splits in order (no float atomics), adds the bias and honours
//! ACCUMULATE. The split count aims at about `TARGET_WORKGROUPS` workgroups with at least
//! `MIN_CHUNK` depth per split (`gpu::coop::depth_split`, as the cooperative-matrix GEMMs).
//!
//! - forward:         y  [N, O] = x [N, I] W^T (+ b)  depth I.
//! - backward_input:  dx [N, I] = dy [N, O] W         depth O.
//! - backward_weight: dW [O, I] = dy^T x              depth N (overwrites or adds).

use super::{DensePass, TiledParams, TILE_T};
use crate::nn::{accumulate_constant, u32_of};
use crate::gpu::coop::depth_split;
use crate::gpu::shaders::DENSE;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::{ensure, Result};

/// Depth split: about this many workgroups in all (an H200 has 132 SMs), at least this much
/// depth per split (a split of 4 K slabs still amortizes its partial's write).
const TARGET_WORKGROUPS: usize = 264;
const MIN_CHUNK: usize = 64;
/// Workgroup size of dense_split_reduce (WG in the shader).
const WG: u32 = 64;

struct PassPlan {
    uniform: wgpu::Buffer,
    groups: [u32; 3],
    splits: usize,
    /// [splits, rows * columns]; None with one split (dense_tiled writes C itself).
    partials: Option<Tensor>,
    rows_cols: usize,
}

/// The split plan of one dense layer: every buffer is made here, when the layer is planned.
pub struct SplitDense {
    name: String,
    passes: [PassPlan; 3],
}

impl SplitDense {
    /// `want`: splits per pass (DensePass order; None: the rule above). For tests.
    pub fn new(gpu: &Gpu, name: &str, batch: usize, in_features: usize, out_features: usize, bias: bool, want: [Option<usize>; 3]) -> Result<SplitDense> {
        let (n, i, o) = (u32_of(name, "batch", batch)?, u32_of(name, "in_features", in_features)?, u32_of(name, "out_features", out_features)?);
        let side = 4 * TILE_T as usize;
        let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
        let mut plans = Vec::with_capacity(3);
        for (k, mut p) in TiledParams::passes(n, i, o, bias).into_iter().enumerate() {
            let pass = DensePass::ALL[k].name();
            let (rows, cols, red) = (p.rows as usize, p.cols as usize, p.red as usize);
            let tiles = [cols.div_ceil(side), rows.div_ceil(side)];
            let (kchunk, splits) = depth_split(red, 16, tiles[0] * tiles[1], TARGET_WORKGROUPS, MIN_CHUNK, want[k]);
            let groups = [tiles[0], tiles[1], splits];
            ensure!(groups.iter().all(|&g| g <= max), "layer {name}: dense_tiled {pass} needs a grid of {groups:?} workgroups, over max_compute_workgroups_per_dimension={max}");
            p.kchunk = u32_of(name, "depth per split", kchunk)?;
            p.splits = u32_of(name, "splits", splits)?;
            let partials = if splits > 1 {
                let t = gpu.tensor(&format!("{name} dense {pass} split partials"), &[splits, rows * cols])?;
                u32_of(name, "split partials", t.len())?;
                Some(t)
            } else {
                None
            };
            plans.push(PassPlan {
                uniform: gpu.uniform(&format!("{name} tiled-split {pass} params"), &p),
                groups: groups.map(|g| g as u32),
                splits,
                partials,
                rows_cols: rows * cols,
            });
        }
        let passes: [PassPlan; 3] = plans.try_into().map_err(|_| crate::Error::new("three dense passes".to_string()))?;
        Ok(SplitDense { name: name.to_string(), passes })
    }

    /// Depth splits of forward, backward_input, backward_weight (1: no reduce).
    pub fn splits(&self) -> [usize; 3] {
        self.passes.each_ref().map(|p| p.splits)
    }

    /// The GEMM of `pass`: C (+)= A B (+ bias where the pass has one; `bias` is bound either
    /// way). Operands as `dense_tiled` reads them; shapes are checked by the caller.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(&self, gpu: &Gpu, pass: DensePass, a: &Tensor, b: &Tensor, bias: &Tensor, c: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        let k = pass as usize;
        let plan = &self.passes[k];
        let label = |entry: &str| format!("{} {entry} ({}, {} splits)", self.name, pass.name(), plan.splits);
        let tile = [("TX", TILE_T as f64), ("TY", TILE_T as f64)];
        let Some(partials) = &plan.partials else {
            let bind = [(19, plan.uniform.as_entire_binding()), (20, a.binding()), (21, b.binding()), (22, c.binding()), (3, bias.binding())];
            let consts = [tile[0], tile[1], accumulate_constant(accumulate)];
            return Ok(vec![Dispatch::new(gpu, &label("dense_tiled"), &DENSE, "dense_tiled", &consts, &bind, plan.groups)?]);
        };
        let bind = [(19, plan.uniform.as_entire_binding()), (20, a.binding()), (21, b.binding()), (22, partials.binding()), (3, bias.binding())];
        let consts = [tile[0], tile[1], accumulate_constant(false)];
        let gemm = Dispatch::new(gpu, &label("dense_tiled"), &DENSE, "dense_tiled", &consts, &bind, plan.groups)?;
        let groups = gpu.groups_1d(&label("dense_split_reduce"), plan.rows_cols as u64, WG)?;
        let bind = [(19, plan.uniform.as_entire_binding()), (23, partials.binding()), (22, c.binding()), (3, bias.binding())];
        let reduce = Dispatch::new(gpu, &label("dense_split_reduce"), &DENSE, "dense_split_reduce", &[("WG", WG as f64), accumulate_constant(accumulate)], &bind, groups)?;
        Ok(vec![gemm, reduce])
    }
}
