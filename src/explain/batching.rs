//! The batching driver of the perturbation methods (SmoothGrad and Integrated Gradients in
//! saliency.rs, occlusion, LIME; deletion / insertion curves next): many copies of each
//! image, made on the GPU by a copy kernel straight into the network's input batch, run
//! through the network a batch at a time. Per batch the driver submits the copy kernel and
//! the network's dispatches once, without waiting; it reads back once per chunk of images.
//!
//! Numbering, shared by every copy kernel (shaders/saliency.wgsl, shaders/occlusion.wgsl):
//! `n` images, S copies of each (noisy samples, path steps, patch positions, masks). The
//! images go through in chunks of at most M (what the kernel's source buffer holds). In a
//! chunk of m <= M images the copies are r in 0..total, total = m*S: copy r % S of the
//! chunk's image r / S. Batch row j (of B, the network's batch) holds copy
//! min(first + j, total - 1): the last batch is padded by repeating the chunk's last copy,
//! whose outputs are dropped.

use super::Model;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::{ensure, Result};

/// Shape of a copy kernel: `rows` (B) copies per batch, `copies` (S) per image, at most
/// `chunk_images` (M) source images per chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub rows: usize,
    pub copies: usize,
    pub chunk_images: usize,
}

impl Layout {
    /// Copies a full chunk holds (M*S).
    pub fn chunk_copies(&self) -> usize {
        self.chunk_images * self.copies
    }
    /// Batches of a full chunk: what a per-chunk output buffer must hold.
    pub fn max_batches(&self) -> usize {
        self.chunk_copies().div_ceil(self.rows)
    }
}

/// A chunk of `images` (m) real images, the first being number `image0` of all; it holds
/// `total` = m*S copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub image0: usize,
    pub images: usize,
    pub total: usize,
}

/// Batch `index` of a chunk: row j holds copy `copy(j)` of the chunk's `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub index: usize,
    pub first: usize,
    pub rows: usize,
    pub total: usize,
}

impl Batch {
    /// The chunk's copy held by row j (padded rows repeat the last copy).
    pub fn copy(&self, j: usize) -> usize {
        (self.first + j).min(self.total - 1)
    }
}

/// Every chunk of `n` images and every batch of a chunk, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub layout: Layout,
    pub images: usize,
}

impl Plan {
    pub fn chunks(&self) -> impl Iterator<Item = Chunk> {
        let (m, s, n) = (self.layout.chunk_images, self.layout.copies, self.images);
        (0..n.div_ceil(m)).map(move |index| {
            let images = m.min(n - index * m);
            Chunk { image0: index * m, images, total: images * s }
        })
    }

    pub fn batches(&self, chunk: &Chunk) -> impl Iterator<Item = Batch> {
        let (rows, total) = (self.layout.rows, chunk.total);
        (0..total).step_by(rows).enumerate().map(move |(index, first)| Batch { index, first, rows, total })
    }
}

/// The fields of a copy kernel's uniform buffer that the host rewrites: `first` (the copy
/// of batch row 0) before each batch; `total` (copies in the chunk) and, for kernels whose
/// randomness is keyed by a global copy id, `image0` before each chunk. Fields are u32 at
/// the given byte offsets; the writes are queued, ordered before the next submit.
pub struct Cursor {
    name: String,
    params: wgpu::Buffer,
    layout: Layout,
    first_at: u64,
    total_at: u64,
    image0_at: Option<u64>,
}

impl Cursor {
    pub fn new(name: &str, params: wgpu::Buffer, layout: Layout, first_at: usize, total_at: usize, image0_at: Option<usize>) -> Cursor {
        Cursor { name: name.to_string(), params, layout, first_at: first_at as u64, total_at: total_at as u64, image0_at: image0_at.map(|o| o as u64) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn layout(&self) -> Layout {
        self.layout
    }
    pub fn params(&self) -> &wgpu::Buffer {
        &self.params
    }

    /// The chunk holds `total` copies (m real images * S, m <= M); its first image is
    /// number `image0` of all the images (written only where the kernel reads it).
    pub fn set_chunk(&self, gpu: &Gpu, total: usize, image0: usize) -> Result<()> {
        let max = self.layout.chunk_copies();
        ensure!(total >= 1 && total <= max, "{}: {total} copies in a chunk of {max} copies", self.name);
        self.write(gpu, self.total_at, total)?;
        match self.image0_at {
            Some(at) => self.write(gpu, at, image0),
            None => Ok(()),
        }
    }

    /// The copy held by batch row 0 for the next submitted dispatches.
    pub fn set_first(&self, gpu: &Gpu, first: usize) -> Result<()> {
        let max = self.layout.chunk_copies();
        ensure!(first < max, "{}: first copy {first} is past the chunk's {max} copies", self.name);
        self.write(gpu, self.first_at, first)
    }

    fn write(&self, gpu: &Gpu, at: u64, v: usize) -> Result<()> {
        let v = crate::nn::u32_of(&self.name, "copy index", v)?;
        gpu.queue.write_buffer(&self.params, at, bytemuck::bytes_of(&v));
        Ok(())
    }
}

/// A GPU kernel writing a batch of copies of a chunk of images into the network's input.
pub trait CopyKernel {
    fn layout(&self) -> Layout;
    /// Before a chunk's batches: upload what the kernel reads per chunk (`images`: the
    /// chunk's m real images, m*C*H*W values) and tell it the chunk (`Cursor::set_chunk`).
    fn load(&self, gpu: &Gpu, chunk: &Chunk, images: &[f32]) -> Result<()>;
    /// Before a batch: tell the kernel which copies to make (`Cursor::set_first`).
    fn seek(&self, gpu: &Gpu, batch: &Batch) -> Result<()>;
    /// The dispatch writing the batch into the network's input.
    fn dispatch(&self) -> &Dispatch;
}

/// Write a chunk's images into a source buffer of M images, zero-filling the rest.
pub fn upload_chunk(gpu: &Gpu, x: &Tensor, images: &[f32]) -> Result<()> {
    ensure!(images.len() <= x.len(), "{}: {} values for a buffer of {}", x.label(), images.len(), x.len());
    let mut v = images.to_vec();
    v.resize(x.len(), 0.0);
    gpu.write(x, &v)
}

/// What the network gives for each copy in [`Driver::scores`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Probabilities,
    Logits,
}

/// Runs a copy kernel's batches through a model.
pub struct Driver<'a> {
    gpu: &'a Gpu,
    model: &'a Model,
    kernel: &'a dyn CopyKernel,
}

impl<'a> Driver<'a> {
    /// A driver for `kernel`, whose rows must be the model's batch (it writes the model's
    /// input).
    pub fn new(gpu: &'a Gpu, model: &'a Model, kernel: &'a dyn CopyKernel) -> Result<Driver<'a>> {
        let l = kernel.layout();
        ensure!(
            l.rows == model.batch() && l.copies > 0 && l.chunk_images > 0,
            "copy kernel of {} rows, {} copies per image and {} images per chunk for a model of batch {}",
            l.rows,
            l.copies,
            l.chunk_images,
            model.batch()
        );
        Ok(Driver { gpu, model, kernel })
    }

    /// Run every batch of copies of `images` (whole images of the model's size). Per chunk:
    /// `kernel.load`. Per batch: `kernel.seek`, `before(chunk, batch)` (host writes, e.g. the
    /// logits gradient seed), then one submission of the copy kernel followed by `net`, with
    /// `after(encoder, batch)` recorded behind the compute pass (copies out of the batch).
    /// After a chunk's last batch, the first `keep(chunk)` values of `readback` are read
    /// (the read waits for the chunk's submissions) and appended to the result.
    pub async fn run_async(
        &self,
        images: &[f32],
        net: &[&Dispatch],
        mut before: impl FnMut(&Chunk, &Batch) -> Result<()>,
        mut after: impl FnMut(&mut wgpu::CommandEncoder, &Batch),
        readback: &Tensor,
        keep: impl Fn(&Chunk) -> usize,
    ) -> Result<Vec<f32>> {
        let plan = Plan { layout: self.kernel.layout(), images: super::saliency::image_count(self.model, images)? };
        let len = self.model.image_len();
        let mut out = Vec::new();
        for chunk in plan.chunks() {
            self.kernel.load(self.gpu, &chunk, &images[chunk.image0 * len..(chunk.image0 + chunk.images) * len])?;
            for batch in plan.batches(&chunk) {
                self.kernel.seek(self.gpu, &batch)?;
                before(&chunk, &batch)?;
                let dispatches = std::iter::once(self.kernel.dispatch()).chain(net.iter().copied());
                self.gpu.submit_with(dispatches, |enc| after(enc, &batch));
            }
            out.extend_from_slice(&self.gpu.read_async(readback).await?[..keep(&chunk)]);
        }
        Ok(out)
    }

    /// The network's `output` [n*S, K] for every copy of `images`, copy r of image i at row
    /// i*S + r: inference forward per batch, each batch's outputs copied into one buffer
    /// read once per chunk.
    pub fn scores(&self, images: &[f32], output: Output) -> Result<Vec<f32>> {
        crate::platform::block_on(self.scores_async(images, output))
    }

    /// `scores`, awaitable (the browser's form; see `crate::platform`).
    pub async fn scores_async(&self, images: &[f32], output: Output) -> Result<Vec<f32>> {
        let (gpu, net) = (self.gpu, &self.model.net);
        let (b, k) = (self.model.batch(), self.model.classes());
        let all = gpu.tensor("copy scores", &[self.kernel.layout().max_batches() * b, k])?;
        let (src, dispatches): (&Tensor, Vec<&Dispatch>) = match output {
            Output::Probabilities => (net.probabilities(), net.infer_dispatches().collect()),
            Output::Logits => (net.logits(), net.forward_infer_dispatches().collect()),
        };
        self.run_async(images, &dispatches, |_, _| Ok(()), |enc, batch| src.copy_to(enc, &all, batch.index * b * k), &all, |chunk| chunk.total * k).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_copy_once_in_order() {
        for (rows, copies, chunk_images, n) in [(4, 3, 2, 5), (1, 1, 1, 1), (7, 5, 3, 3), (3, 10, 1, 2)] {
            let plan = Plan { layout: Layout { rows, copies, chunk_images }, images: n };
            let mut seen = Vec::new();
            for chunk in plan.chunks() {
                assert_eq!(chunk.total, chunk.images * copies);
                let batches: Vec<Batch> = plan.batches(&chunk).collect();
                assert!(batches.len() <= plan.layout.max_batches());
                for (i, b) in batches.iter().enumerate() {
                    assert_eq!(b.index, i);
                    let real = (b.total - b.first).min(rows);
                    seen.extend((0..real).map(|j| chunk.image0 * copies + b.copy(j)));
                    assert_eq!(b.copy(rows - 1), (b.first + rows - 1).min(chunk.total - 1));
                }
            }
            assert_eq!(seen, (0..n * copies).collect::<Vec<_>>(), "rows {rows} copies {copies} chunk {chunk_images} n {n}");
        }
    }
}
