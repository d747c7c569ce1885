//! The WGSL sources, one file per kernel family under `shaders/`, embedded at build time.

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

    pub fn source(self) -> &'static str {
        match self {
            ShaderId::Matvec => include_str!("../../shaders/matvec.wgsl"),
        }
    }
}
