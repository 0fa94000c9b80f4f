//! The WGSL sources, compiled into the binary. One file per layer family; forward and
//! backward entry points side by side. `ALL` is what the naga test walks (it also checks
//! that every file in shaders/ is listed here).
//!
//! Each module is built from its file followed by shaders/prelude.wgsl (`PRELUDE`: `flat`,
//! `pcg`, helpers written once for every shader). Appending keeps the file's line numbers
//! in error messages and its `enable` directives first; WGSL does not care about order.
//!
//! Cooperative-matrix kernels (`*_coop`) are built twice from one body, shaders/NAME.wgsl:
//! `NAME` is shaders/coop/real.wgsl (the real cooperative operations: needs `Gpu::has_coop`),
//! then the shared GEMM core shaders/coop/gemm.wgsl, the body and the prelude;
//! `NAME_emulated` the same after shaders/coop/emulated.wgsl instead (plain-WGSL stand-ins
//! of the same tiles: needs only f16). The only difference is how the cooperative load,
//! multiply-add and store are spelled.

/// shaders/prelude.wgsl.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

#[derive(Debug, Clone, Copy)]
pub struct Shader {
    pub name: &'static str,
    /// shaders/<name>.wgsl as written.
    pub file: &'static str,
    /// What the device compiles: `file`, a newline, then `PRELUDE` (the cooperative-matrix
    /// builds: their coop prelude and the GEMM core first).
    pub source: &'static str,
}

impl Shader {
    /// Files named `*_subgroup` use subgroup operations: only build their pipelines where
    /// `Gpu::subgroup_min_size` allows (a module using them fails to compile elsewhere).
    pub fn needs_subgroups(&self) -> bool {
        self.name.ends_with("_subgroup")
    }

    /// The real build of a cooperative-matrix kernel (`*_coop`): only where `Gpu::has_coop`.
    pub fn needs_coop(&self) -> bool {
        self.name.ends_with("_coop")
    }

    /// Both builds of the cooperative-matrix kernels use f16 (`Gpu::has_f16`).
    pub fn needs_f16(&self) -> bool {
        self.name.ends_with("_coop") || self.name.ends_with("_coop_emulated")
    }
}

macro_rules! shaders {
    (plain { $($konst:ident = $name:literal;)* } coop { $($real:ident, $emulated:ident = $cname:literal;)* }) => {
        $(pub const $konst: Shader = Shader {
            name: $name,
            file: include_str!(concat!("../../shaders/", $name, ".wgsl")),
            source: concat!(include_str!(concat!("../../shaders/", $name, ".wgsl")), "\n", include_str!("../../shaders/prelude.wgsl")),
        };)*
        $(
            pub const $real: Shader = Shader {
                name: $cname,
                file: include_str!(concat!("../../shaders/", $cname, ".wgsl")),
                source: concat!(
                    include_str!("../../shaders/coop/real.wgsl"),
                    include_str!("../../shaders/coop/gemm.wgsl"),
                    include_str!(concat!("../../shaders/", $cname, ".wgsl")),
                    "\n",
                    include_str!("../../shaders/prelude.wgsl")
                ),
            };
            pub const $emulated: Shader = Shader {
                name: concat!($cname, "_emulated"),
                file: include_str!(concat!("../../shaders/", $cname, ".wgsl")),
                source: concat!(
                    include_str!("../../shaders/coop/emulated.wgsl"),
                    include_str!("../../shaders/coop/gemm.wgsl"),
                    include_str!(concat!("../../shaders/", $cname, ".wgsl")),
                    "\n",
                    include_str!("../../shaders/prelude.wgsl")
                ),
            };
        )*
        pub const ALL: &[Shader] = &[$($konst,)* $($real, $emulated,)*];
    };
}

shaders! {
    plain {
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
        LOSS_SCALE = "loss_scale";
        OCCLUSION = "occlusion";
        OPTIM = "optim";
        PAD = "pad";
        POOL = "pool";
        SALIENCY = "saliency";
        SOFTMAX_XENT = "softmax_xent";
    }
    coop {
        CONV2D_COOP, CONV2D_COOP_EMULATED = "conv2d_coop";
        DENSE_COOP, DENSE_COOP_EMULATED = "dense_coop";
    }
}
