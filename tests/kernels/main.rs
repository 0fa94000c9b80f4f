//! Every WGSL kernel, forward and backward, against the f64 reference (src/reference) on
//! awkward shapes: batch 1, odd spatial sizes, 1 / 3 / 64+ channels, sizes that are not
//! multiples of the workgroup size. One test binary so wgpu is linked once.

mod common;
mod coop_common;

mod context;

mod activation;
mod augment;
mod batchnorm;
mod conv2d;
mod conv2d_coop;
mod conv2d_tiled;
mod dense;
mod dense_coop;
mod dropout;
mod loss_scale;
mod optim;
mod pad;
mod pool;
mod softmax_xent;
