//! A labelled region of a GPU storage buffer with a shape. Views (flatten, a parameter
//! inside the flat arena) share the buffer: no copies.

use super::MemStats;
use crate::{ensure, Result};
use std::sync::{Arc, Weak};

struct Alloc {
    buffer: wgpu::Buffer,
    bytes: u64,
    align: u32,
    mem: Arc<MemStats>,
}

impl Drop for Alloc {
    fn drop(&mut self) {
        self.mem.sub(self.bytes);
    }
}

/// Elements are 4 bytes (f32, or u32 for indices and flags). Row-major, NCHW for images.
#[derive(Clone)]
pub struct Tensor {
    alloc: Arc<Alloc>,
    offset: u64,
    shape: Vec<usize>,
    label: Arc<str>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({} {:?} @{})", self.label, self.shape, self.offset)
    }
}

/// A tensor that does not keep its buffer alive (`Gpu::scratch` remembers its shared buffer
/// this way, so the buffer goes when the last layer using it does).
pub(super) struct WeakTensor {
    alloc: Weak<Alloc>,
    shape: Vec<usize>,
    label: Arc<str>,
}

impl WeakTensor {
    pub(super) fn upgrade(&self) -> Option<Tensor> {
        Some(Tensor { alloc: self.alloc.upgrade()?, offset: 0, shape: self.shape.clone(), label: self.label.clone() })
    }
}

impl Tensor {
    /// `self` (a whole buffer) without keeping it alive.
    pub(super) fn downgrade(&self) -> WeakTensor {
        WeakTensor { alloc: Arc::downgrade(&self.alloc), shape: self.shape.clone(), label: self.label.clone() }
    }

    pub(super) fn new(buffer: wgpu::Buffer, bytes: u64, shape: &[usize], label: &str, align: u32, mem: Arc<MemStats>) -> Self {
        mem.add(bytes);
        Tensor { alloc: Arc::new(Alloc { buffer, bytes, align, mem }), offset: 0, shape: shape.to_vec(), label: label.into() }
    }
    /// Whether `self` and `other` are views of the same GPU buffer (a kernel may not bind
    /// one buffer both read-only and read-write).
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.alloc, &other.alloc)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.alloc.buffer
    }
    /// Byte offset of this view in its buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }
    /// The binding of exactly this view's bytes.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.alloc.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.bytes()),
        })
    }

    /// Record a copy of this tensor into `dst` starting `dst_elem_offset` elements in.
    pub fn copy_to(&self, encoder: &mut wgpu::CommandEncoder, dst: &Tensor, dst_elem_offset: usize) {
        assert!(dst_elem_offset + self.len() <= dst.len(), "copy of {} into {} out of range", self.label, dst.label);
        encoder.copy_buffer_to_buffer(self.buffer(), self.offset, dst.buffer(), dst.offset + dst_elem_offset as u64 * 4, self.bytes());
    }

    /// Same elements, another shape (flatten is a view, not a copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        ensure!(n == self.len(), "{}: cannot view shape {:?} ({} values) as {shape:?} ({n} values)", self.label, self.shape, self.len());
        Ok(Tensor { shape: shape.to_vec(), ..self.clone() })
    }

    /// A sub-range starting `elem_offset` elements in, of `shape`. The byte offset must meet
    /// the device's min_storage_buffer_offset_alignment (the parameter arena pads for it).
    pub fn view(&self, label: &str, elem_offset: usize, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        ensure!(n > 0, "{label}: a view must hold at least one element");
        ensure!(
            elem_offset + n <= self.len(),
            "{label}: view [{elem_offset}, {}) is outside {} ({} values)",
            elem_offset + n,
            self.label,
            self.len()
        );
        let offset = self.offset + elem_offset as u64 * 4;
        ensure!(
            offset.is_multiple_of(self.alloc.align as u64),
            "{label}: byte offset {offset} is not a multiple of min_storage_buffer_offset_alignment={}",
            self.alloc.align
        );
        Ok(Tensor { alloc: self.alloc.clone(), offset, shape: shape.to_vec(), label: label.into() })
    }

    /// Error unless this tensor has exactly `shape`, naming the layer and the role.
    pub fn expect_shape(&self, layer: &str, role: &str, shape: &[usize]) -> Result<()> {
        ensure!(
            self.shape == shape,
            "layer {layer}: {role} ({}) has shape {:?}, expected {shape:?}",
            self.label,
            self.shape
        );
        Ok(())
    }

    /// Error unless this tensor has exactly `n` elements (whatever its shape).
    pub fn expect_len(&self, layer: &str, role: &str, n: usize) -> Result<()> {
        ensure!(
            self.len() == n,
            "layer {layer}: {role} ({}) has {} values (shape {:?}), expected {n}",
            self.label,
            self.len(),
            self.shape
        );
        Ok(())
    }
}
