//! im2col for patch embeddings: the input patches of a strided Conv2d as the rows of a matrix,
//! so that the convolution is a `matvec` product with its kernel (see shaders/patches.wgsl).
//! ViT and CLIP cut an image into non-overlapping patches (stride = kernel); AST cuts its
//! spectrogram into overlapping ones (16×16 patches every 10 frames and 10 mel bins).

use crate::check::Comparison;
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, check_len, grid, new_encoder, submit};
use crate::gpu::shaders::ShaderId;

const OP: &str = "im2col";
const WORKGROUP: u32 = 256;

/// Uniforms of `struct PatchParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PatchParams {
    pub channels: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub prefix: u32,
    pub c_stride: u32,
    pub y_stride: u32,
    pub x_stride: u32,
    pub image_stride: u32,
    pub batch: u32,
    pub groups_x: u32,
    pub pad_x: u32,
    pub width: u32,
}

/// Where element (c, y, x) of an input image sits: `c·c + y·y + x·x` from the image's start,
/// images `image` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub c: u32,
    pub y: u32,
    pub x: u32,
    pub image: u32,
}

/// A Conv2d's geometry over an input of `channels × height × width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patches {
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    /// Rows before each image's patches in the output (zeroed).
    pub prefix: u32,
    /// Zero columns on each side of the input along x (a Conv1d's `padding`); 0 for none.
    pub pad_x: u32,
}

impl Patches {
    /// Checks the geometry: a kernel that fits in the input, non-zero strides.
    pub fn new(channels: u32, (height, width): (u32, u32), (kh, kw): (u32, u32), (sh, sw): (u32, u32), prefix: u32) -> Result<Self, GpuError> {
        Self::padded(channels, (height, width), (kh, kw), (sh, sw), prefix, 0)
    }

    /// As `new`, the input seen with `pad_x` zero columns on each side along x (PyTorch's Conv1d
    /// `padding` over a (channels, 1, width) input).
    pub fn padded(channels: u32, (height, width): (u32, u32), (kh, kw): (u32, u32), (sh, sw): (u32, u32), prefix: u32, pad_x: u32) -> Result<Self, GpuError> {
        let p = Self { channels, height, width, kh, kw, sh, sw, prefix, pad_x };
        if channels == 0 || kh == 0 || kw == 0 || sh == 0 || sw == 0 || kh > height || u64::from(kw) > u64::from(width) + 2 * u64::from(pad_x) || pad_x >= kw.max(1) {
            return Err(GpuError::Shape { op: OP, detail: format!("{p:?}") });
        }
        Ok(p)
    }

    /// Output positions down and across (PyTorch's Conv2d, padded along x by `pad_x`).
    pub fn out_h(&self) -> u32 {
        (self.height - self.kh) / self.sh + 1
    }

    pub fn out_w(&self) -> u32 {
        (self.width + 2 * self.pad_x - self.kw) / self.sw + 1
    }

    pub fn patches(&self) -> u32 {
        self.out_h() * self.out_w()
    }

    /// Rows per image in the output: the prefix and the patches.
    pub fn rows(&self) -> u32 {
        self.prefix + self.patches()
    }

    /// Values per patch: channels · kh · kw.
    pub fn cols(&self) -> u32 {
        self.channels * self.kh * self.kw
    }

    /// The CHW layout of contiguous images.
    pub fn chw(&self) -> Layout {
        Layout { c: self.height * self.width, y: self.width, x: 1, image: self.channels * self.height * self.width }
    }

    /// Values of `x` that `batch` images in `layout` span: up to the last image's last element.
    pub fn input_len(&self, batch: u32, layout: Layout) -> u64 {
        let last = u64::from(self.channels - 1) * u64::from(layout.c) + u64::from(self.height - 1) * u64::from(layout.y) + u64::from(self.width - 1) * u64::from(layout.x);
        u64::from(batch.max(1) - 1) * u64::from(layout.image) + last + 1
    }

    /// Records the patches of `batch` images of `x` (in `layout`) into `y`.
    pub async fn encode(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, batch: u32, layout: Layout, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<(), GpuError> {
        let x_len = self.input_len(batch, layout);
        let n = u64::from(batch) * u64::from(self.rows()) * u64::from(self.cols());
        if batch == 0 || n > u64::from(u32::MAX) || x_len > u64::from(u32::MAX) {
            return Err(GpuError::Shape { op: OP, detail: format!("{batch} images of {self:?}") });
        }
        check_len(OP, "x", x, x_len)?;
        check_len(OP, "y", y, n)?;
        let groups = grid(ctx, OP, n.div_ceil(u64::from(WORKGROUP)))?;
        let params = PatchParams {
            channels: self.channels,
            kh: self.kh,
            kw: self.kw,
            sh: self.sh,
            sw: self.sw,
            out_h: self.out_h(),
            out_w: self.out_w(),
            prefix: self.prefix,
            c_stride: layout.c,
            y_stride: layout.y,
            x_stride: layout.x,
            image_stride: layout.image,
            batch,
            groups_x: groups.0,
            pad_x: self.pad_x,
            width: self.width,
        };
        Dispatch { shader: ShaderId::Patches, entry_point: "im2col", workgroup_size: WORKGROUP, kind: None, threads_per_row: None, fuse: None, params, buffers: &[x, y], groups }
            .encode(ctx, encoder)
            .await
    }

    /// CPU reference: the same matrix.
    pub fn reference(&self, batch: u32, layout: Layout, x: &[f32]) -> Vec<f32> {
        let mut y = Vec::with_capacity((batch * self.rows() * self.cols()) as usize);
        for b in 0..batch {
            y.resize(y.len() + (self.prefix * self.cols()) as usize, 0.0);
            for py in 0..self.out_h() {
                for px in 0..self.out_w() {
                    for c in 0..self.channels {
                        for ky in 0..self.kh {
                            for kx in 0..self.kw {
                                let (yy, xx) = (py * self.sh + ky, (px * self.sw + kx).wrapping_sub(self.pad_x));
                                y.push(if xx < self.width { x[(b * layout.image + c * layout.c + yy * layout.y + xx * layout.x) as usize] } else { 0.0 });
                            }
                        }
                    }
                }
            }
        }
        y
    }
}

/// Runs `patches` over `batch` seeded random inputs in `layout` and compares with the reference
/// (a copy: exact).
pub async fn check_against_reference(ctx: &GpuContext, patches: &Patches, batch: u32, layout: Layout, seed: u64) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let x = rng.signed_unit_vec((batch * layout.image) as usize);
    let x_buf = ctx.storage_from(OP, "x", &x)?;
    let n = (batch * patches.rows() * patches.cols()) as usize;
    // Start from non-zero values, so that the prefix rows must be written.
    let y_buf = ctx.storage_from(OP, "y", &vec![7.0f32; n])?;
    let mut encoder = new_encoder(ctx, OP);
    patches.encode(ctx, &mut encoder, batch, layout, &x_buf, &y_buf).await?;
    submit(ctx, OP, encoder).await?;
    let y = ctx.read_f32(&y_buf, n).await?;
    let expected: Vec<f64> = patches.reference(batch, layout, &x).into_iter().map(f64::from).collect();
    Ok(Comparison::within(&y, &expected, crate::check::Tolerance { rel: 0.0, abs: 0.0 }))
}
