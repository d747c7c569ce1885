//! The WGSL modules, embedded at build time. A module is one or more files of `shaders/`
//! concatenated (WGSL has no includes; declarations may come in any order), e.g. a kernel file
//! followed by the weight decoders of `quant_decode.wgsl`.
//!
//! A module that uses f16 types (`needs_f16`) starts with `enable f16;`, prefixed here rather
//! than written in a file, so that no file shared with an f32 module carries the directive: the
//! f32 and f16 matvec modules share `matvec.wgsl` and differ in the block dot products appended
//! (`quant_dot.wgsl` or `quant_dot_f16.wgsl`), and a device without shader-f16 never compiles
//! the f16 one (the pipeline cache refuses it).
//!
//! Each module declares its bindings here too (group 0, in binding order): pipelines get an
//! explicit layout from this list, shared by all entry points of the module, and a test checks it
//! against the WGSL declarations.

/// What a binding holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

/// Identifies a shader module; part of every pipeline key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderId {
    Matvec,
    /// The tiled matrix product for many tokens (weights decoded into workgroup memory).
    Matmul,
    /// The register-blocked matrix product for CPU adapters (no workgroup memory).
    MatmulBlocked,
    /// `MatmulBlocked` sharing X's columns through subgroups (`GpuContext::subgroup_sharing`).
    MatmulBlockedSubgroups,
    /// The matvec kernel with f16 block products (`enable f16;`).
    MatvecF16,
    /// Activations packed to f16 for `MatvecF16` (f32 WGSL: no f16 types).
    StageF16,
    Elementwise,
    Norm,
    Rope,
    Reduce,
    Attention,
    /// `Attention` sharing key and value rows through subgroups (`GpuContext::subgroup_sharing`).
    AttentionSubgroups,
    Pool,
    Embedding,
    Sample,
    Patches,
}

macro_rules! wgsl {
    ($($file:literal),+) => { concat!($(include_str!(concat!("../../shaders/", $file))),+) };
}

impl ShaderId {
    pub const ALL: &'static [ShaderId] = &[ShaderId::Matvec, ShaderId::Matmul, ShaderId::MatmulBlocked, ShaderId::MatmulBlockedSubgroups, ShaderId::MatvecF16, ShaderId::StageF16, ShaderId::Elementwise, ShaderId::Norm, ShaderId::Rope, ShaderId::Reduce, ShaderId::Attention, ShaderId::AttentionSubgroups, ShaderId::Pool, ShaderId::Embedding, ShaderId::Sample, ShaderId::Patches];

    /// The files (under `shaders/`) this module is made of, in order; the first names it.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            ShaderId::Matvec => &["matvec.wgsl", "quant_decode.wgsl", "quant_dot.wgsl", "product_epilogue.wgsl", "activations.wgsl"],
            ShaderId::Matmul => &["matmul.wgsl", "quant_decode.wgsl", "product_epilogue.wgsl", "activations.wgsl"],
            ShaderId::MatmulBlocked => &["matmul_blocked.wgsl", "matmul_blocked_loads.wgsl", "quant_decode.wgsl", "product_epilogue.wgsl", "activations.wgsl"],
            ShaderId::MatmulBlockedSubgroups => &["matmul_blocked.wgsl", "matmul_blocked_subgroups.wgsl", "quant_decode.wgsl", "product_epilogue.wgsl", "activations.wgsl"],
            ShaderId::MatvecF16 => &["matvec.wgsl", "quant_decode.wgsl", "quant_dot_f16.wgsl", "product_epilogue.wgsl", "activations.wgsl"],
            ShaderId::StageF16 => &["stage_f16.wgsl"],
            ShaderId::Elementwise => &["elementwise.wgsl", "activations.wgsl"],
            ShaderId::Norm => &["norm.wgsl"],
            ShaderId::Rope => &["rope.wgsl"],
            ShaderId::Reduce => &["reduce.wgsl"],
            ShaderId::Attention => &["attention.wgsl", "attention_loads.wgsl"],
            ShaderId::AttentionSubgroups => &["attention.wgsl", "attention_subgroups.wgsl"],
            ShaderId::Pool => &["pool.wgsl"],
            ShaderId::Embedding => &["embedding.wgsl", "quant_decode.wgsl"],
            ShaderId::Sample => &["sample.wgsl"],
            ShaderId::Patches => &["patches.wgsl"],
        }
    }

    /// A name for errors and labels: the first file, and "(f16)" for f16 modules.
    pub fn name(self) -> &'static str {
        match self {
            ShaderId::MatvecF16 => "matvec.wgsl (f16)",
            ShaderId::MatmulBlockedSubgroups => "matmul_blocked.wgsl (subgroups)",
            ShaderId::AttentionSubgroups => "attention.wgsl (subgroups)",
            other => other.files()[0],
        }
    }

    /// Whether the module uses f16 types: it starts with `enable f16;` and compiles only on a
    /// device with shader-f16.
    pub fn needs_f16(self) -> bool {
        matches!(self, ShaderId::MatvecF16)
    }

    /// Whether the module uses subgroup builtins: it compiles only on a device with subgroups
    /// (and, in the browser, starts with `enable subgroups;`).
    pub fn needs_subgroups(self) -> bool {
        matches!(self, ShaderId::MatmulBlockedSubgroups | ShaderId::AttentionSubgroups)
    }

    /// One of the two modules of the blocked product kernel.
    pub fn is_blocked(self) -> bool {
        matches!(self, ShaderId::MatmulBlocked | ShaderId::MatmulBlockedSubgroups)
    }

    pub fn source(self) -> &'static str {
        match self {
            ShaderId::Matvec => wgsl!("matvec.wgsl", "quant_decode.wgsl", "quant_dot.wgsl", "product_epilogue.wgsl", "activations.wgsl"),
            ShaderId::Matmul => wgsl!("matmul.wgsl", "quant_decode.wgsl", "product_epilogue.wgsl", "activations.wgsl"),
            ShaderId::MatmulBlocked => wgsl!("matmul_blocked.wgsl", "matmul_blocked_loads.wgsl", "quant_decode.wgsl", "product_epilogue.wgsl", "activations.wgsl"),
            // Tint wants the directive; naga 30 refuses it as unimplemented and takes subgroup
            // builtins from the device's capabilities.
            #[cfg(target_arch = "wasm32")]
            ShaderId::MatmulBlockedSubgroups => concat!("enable subgroups;\n", wgsl!("matmul_blocked.wgsl", "matmul_blocked_subgroups.wgsl", "quant_decode.wgsl", "product_epilogue.wgsl", "activations.wgsl")),
            #[cfg(not(target_arch = "wasm32"))]
            ShaderId::MatmulBlockedSubgroups => wgsl!("matmul_blocked.wgsl", "matmul_blocked_subgroups.wgsl", "quant_decode.wgsl", "product_epilogue.wgsl", "activations.wgsl"),
            ShaderId::MatvecF16 => concat!("enable f16;\n", wgsl!("matvec.wgsl", "quant_decode.wgsl", "quant_dot_f16.wgsl", "product_epilogue.wgsl", "activations.wgsl")),
            ShaderId::StageF16 => wgsl!("stage_f16.wgsl"),
            ShaderId::Elementwise => wgsl!("elementwise.wgsl", "activations.wgsl"),
            ShaderId::Norm => wgsl!("norm.wgsl"),
            ShaderId::Rope => wgsl!("rope.wgsl"),
            ShaderId::Reduce => wgsl!("reduce.wgsl"),
            ShaderId::Attention => wgsl!("attention.wgsl", "attention_loads.wgsl"),
            #[cfg(target_arch = "wasm32")]
            ShaderId::AttentionSubgroups => concat!("enable subgroups;\n", wgsl!("attention.wgsl", "attention_subgroups.wgsl")),
            #[cfg(not(target_arch = "wasm32"))]
            ShaderId::AttentionSubgroups => wgsl!("attention.wgsl", "attention_subgroups.wgsl"),
            ShaderId::Pool => wgsl!("pool.wgsl"),
            ShaderId::Embedding => wgsl!("embedding.wgsl", "quant_decode.wgsl"),
            ShaderId::Sample => wgsl!("sample.wgsl"),
            ShaderId::Patches => wgsl!("patches.wgsl"),
        }
    }

    /// Bindings 0, 1, … of group 0.
    pub fn bindings(self) -> &'static [Binding] {
        use Binding::*;
        match self {
            // W, X (staged on the f16 path), Y, bias, residual (product_epilogue.wgsl), then the
            // f16 module's scales of the staged X or the blocked kernel's norm gain.
            ShaderId::Matvec | ShaderId::Matmul => &[Uniform, Read, Read, ReadWrite, Read, Read],
            ShaderId::MatvecF16 => &[Uniform, Read, Read, ReadWrite, Read, Read, Read],
            // …and the weight again, read as vec4s.
            ShaderId::MatmulBlocked | ShaderId::MatmulBlockedSubgroups => &[Uniform, Read, Read, ReadWrite, Read, Read, Read, Read],
            ShaderId::StageF16 => &[Uniform, Read, ReadWrite, ReadWrite],
            ShaderId::Elementwise => &[Uniform, Read, Read, ReadWrite],
            ShaderId::Norm => &[Uniform, Read, Read, Read, ReadWrite],
            ShaderId::Rope => &[Uniform, Read, ReadWrite, ReadWrite],
            ShaderId::Reduce => &[Uniform, Read, ReadWrite, ReadWrite],
            // Q, K, V, lengths, scores, O, relative position bias, then Q, K, V as vec4s.
            ShaderId::Attention | ShaderId::AttentionSubgroups => &[Uniform, Read, Read, Read, Read, ReadWrite, ReadWrite, Read, Read, Read, Read],
            ShaderId::Pool => &[Uniform, Read, Read, ReadWrite],
            ShaderId::Embedding => &[Uniform, Read, Read, ReadWrite],
            ShaderId::Sample => &[Uniform, Read, ReadWrite],
            ShaderId::Patches => &[Uniform, Read, ReadWrite],
        }
    }
}
