//! The WGSL modules, embedded at build time. A module is one or more files of `shaders/`
//! concatenated (WGSL has no includes; declarations may come in any order), e.g. a kernel file
//! followed by the weight decoders of `quant.wgsl`.

/// Identifies a shader module; part of every pipeline key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderId {
    Matvec,
}

impl ShaderId {
    pub const ALL: &'static [ShaderId] = &[ShaderId::Matvec];

    pub fn name(self) -> &'static str {
        match self {
            ShaderId::Matvec => "matvec.wgsl",
        }
    }

    /// The files (under `shaders/`) this module is made of, in order.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            ShaderId::Matvec => &["matvec.wgsl", "quant.wgsl"],
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            ShaderId::Matvec => concat!(include_str!("../../shaders/matvec.wgsl"), include_str!("../../shaders/quant.wgsl")),
        }
    }
}
