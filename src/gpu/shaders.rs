//! The WGSL sources, compiled into the binary. One file per layer family; forward and
//! backward entry points side by side. `ALL` is what the naga test walks (it also checks
//! that every file in shaders/ is listed here).

#[derive(Debug, Clone, Copy)]
pub struct Shader {
    pub name: &'static str,
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
        $(pub const $konst: Shader = Shader { name: $name, source: include_str!(concat!("../../shaders/", $name, ".wgsl")) };)*
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
    FAITHFULNESS = "faithfulness";
    LIME = "lime";
    OCCLUSION = "occlusion";
    OPTIM = "optim";
    PAD = "pad";
    POOL = "pool";
    SALIENCY = "saliency";
    SOFTMAX_XENT = "softmax_xent";
}
