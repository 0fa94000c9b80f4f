//! The WGSL sources, compiled into the binary. One file per layer family; forward and
//! backward entry points side by side. `ALL` is what the naga test walks (it also checks
//! that every file in shaders/ is listed here).
//!
//! Each module is built from its file followed by shaders/prelude.wgsl (`PRELUDE`: `flat`,
//! `pcg`, helpers written once for every shader). Appending keeps the file's line numbers
//! in error messages and its `enable` directives first; WGSL does not care about order.

/// shaders/prelude.wgsl.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

#[derive(Debug, Clone, Copy)]
pub struct Shader {
    pub name: &'static str,
    /// shaders/<name>.wgsl as written.
    pub file: &'static str,
    /// What the device compiles: `file`, a newline, then `PRELUDE`.
    pub source: &'static str,
}

impl Shader {
    /// Files named `*_subgroup` use subgroup operations: only build their pipelines where
    /// `Gpu::subgroup_min_size` allows (a module using them fails to compile elsewhere).
    pub fn needs_subgroups(&self) -> bool {
        self.name.ends_with("_subgroup")
    }
}

macro_rules! shaders {
    ($($konst:ident = $name:literal;)*) => {
        $(pub const $konst: Shader = Shader {
            name: $name,
            file: include_str!(concat!("../../shaders/", $name, ".wgsl")),
            source: concat!(include_str!(concat!("../../shaders/", $name, ".wgsl")), "\n", include_str!("../../shaders/prelude.wgsl")),
        };)*
        pub const ALL: &[Shader] = &[$($konst),*];
    };
}

shaders! {
    ACTIVATION = "activation";
    ASCENT = "ascent";
    AUGMENT = "augment";
    BATCHNORM = "batchnorm";
    CONV2D = "conv2d";
    CONV2D_SUBGROUP = "conv2d_subgroup";
    CONV2D_TILED = "conv2d_tiled";
    DENSE = "dense";
    DENSE_SUBGROUP = "dense_subgroup";
    DROPOUT = "dropout";
    LIME = "lime";
    OCCLUSION = "occlusion";
    OPTIM = "optim";
    PAD = "pad";
    POOL = "pool";
    SALIENCY = "saliency";
    SOFTMAX_XENT = "softmax_xent";
}
