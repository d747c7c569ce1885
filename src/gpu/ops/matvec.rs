//! `y = W·x` with f32 weights: the decode-time workhorse (one weight row per workgroup).

use crate::check::gamma_f32;
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::grid_2d;
use crate::gpu::pipelines::PipelineKey;
use crate::gpu::shaders::ShaderId;

const OP: &str = "matvec";

/// Uniforms of `shaders/matvec.wgsl` (`struct MatvecParams`); a test checks the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatvecParams {
    pub rows: u32,
    pub cols: u32,
    pub groups_x: u32,
    pub _pad: u32,
}

/// A matrix-vector product of a given shape.
#[derive(Clone, Copy, Debug)]
pub struct Matvec {
    pub rows: u32,
    pub cols: u32,
    /// Invocations per workgroup: a power of two in 1..=256.
    pub workgroup_size: u32,
}

impl Matvec {
    pub fn new(rows: usize, cols: usize) -> Result<Self, GpuError> {
        let shape = || format!("W is ({rows}, {cols})");
        let rows = u32::try_from(rows).map_err(|_| GpuError::Shape { op: OP, detail: shape() })?;
        let cols = u32::try_from(cols).map_err(|_| GpuError::Shape { op: OP, detail: shape() })?;
        if rows == 0 || cols == 0 {
            return Err(GpuError::Shape { op: OP, detail: format!("{}: empty", shape()) });
        }
        // The shader indexes W with a u32 (row * cols + c).
        if u64::from(rows) * u64::from(cols) > u64::from(u32::MAX) {
            return Err(GpuError::Shape { op: OP, detail: format!("{}: more than 2^32 elements", shape()) });
        }
        Ok(Self { rows, cols, workgroup_size: 256 })
    }

    /// Records the product into `encoder`. Buffers: `w` (rows·cols f32), `x` (cols f32),
    /// `y` (rows f32, written).
    pub async fn encode(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        w: &wgpu::Buffer,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let wg = self.workgroup_size;
        if !wg.is_power_of_two() || wg > 256 || wg > ctx.limits.max_compute_invocations_per_workgroup {
            return Err(GpuError::Shape { op: OP, detail: format!("workgroup size {wg} is not a power of two ≤ 256 allowed here") });
        }
        let f32_bytes = |n: u32| u64::from(n) * 4;
        for (buffer, needed, what) in [
            (w, f32_bytes(self.rows) * u64::from(self.cols), "W"),
            (x, f32_bytes(self.cols), "x"),
            (y, f32_bytes(self.rows), "y"),
        ] {
            if buffer.size() < needed {
                return Err(GpuError::Shape { op: OP, detail: format!("{what} has {} bytes, needs {needed}", buffer.size()) });
            }
        }
        let (groups_x, groups_y) = grid_2d(self.rows, ctx.limits.max_compute_workgroups_per_dimension)
            .ok_or_else(|| GpuError::Shape { op: OP, detail: format!("{} rows exceed the dispatch grid", self.rows) })?;

        let pipeline = ctx
            .pipeline(PipelineKey { shader: ShaderId::Matvec, entry_point: "matvec_f32", workgroup_size: wg })
            .await?;
        let params = ctx.uniform("matvec params", &MatvecParams { rows: self.rows, cols: self.cols, groups_x, _pad: 0 });
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(OP),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: w.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: x.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: y.as_entire_binding() },
            ],
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(OP), timestamp_writes: None });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups_x, groups_y, 1);
        Ok(())
    }

    /// Uploads `w` and `x`, runs the product and reads `y` back: for tests and self-checks.
    pub async fn run(&self, ctx: &GpuContext, w: &[f32], x: &[f32]) -> Result<Vec<f32>, GpuError> {
        let (rows, cols) = (self.rows as usize, self.cols as usize);
        if w.len() != rows * cols || x.len() != cols {
            return Err(GpuError::Shape {
                op: OP,
                detail: format!("W has {} values and x {}, expected {} and {cols}", w.len(), x.len(), rows * cols),
            });
        }
        let w_buf = ctx.storage_from(OP, "W", w)?;
        let x_buf = ctx.storage_from(OP, "x", x)?;
        let y_buf = ctx.storage_output(OP, "y", rows as u64 * 4)?;
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(OP) });
        self.encode(ctx, &mut encoder, &w_buf, &x_buf, &y_buf).await?;
        ctx.scoped(OP, || ctx.queue.submit([encoder.finish()])).await?;
        ctx.read_f32(&y_buf, rows).await
    }

    /// The bound on |GPU − exact| for each row: the shader's summation depth (a sequential run of
    /// ceil(cols/WG) products, then log2(WG) tree levels, plus the product's own rounding) times
    /// Σ|W·x|. Rigorous for any rounding mode, so a pass is never luck and a wrong index fails.
    pub fn error_bound<'a>(&self, abs_sums: &'a [f64]) -> impl Fn(usize) -> f64 + 'a {
        let depth = u64::from(self.cols.div_ceil(self.workgroup_size))
            + u64::from(self.workgroup_size.trailing_zeros())
            + 1;
        let gamma = gamma_f32(depth);
        // Plus an absolute term for flushed subnormal products (≤ 2^-126 each).
        let flush = f64::from(self.cols) * f64::from(f32::MIN_POSITIVE);
        move |row| gamma * abs_sums[row] + flush
    }
}

/// CPU reference: exact-as-f64 `W·x` and, per row, Σ|W·x| (for the error bound).
pub fn reference(w: &[f32], x: &[f32], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = Vec::with_capacity(rows);
    let mut abs_sums = Vec::with_capacity(rows);
    for row in w.chunks_exact(cols).take(rows) {
        let (mut sum, mut abs_sum) = (0.0f64, 0.0f64);
        for (&wv, &xv) in row.iter().zip(x) {
            let p = f64::from(wv) * f64::from(xv);
            sum += p;
            abs_sum += p.abs();
        }
        y.push(sum);
        abs_sums.push(abs_sum);
    }
    (y, abs_sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_on_a_known_case() {
        // [[1, 2, 3], [-4, 5, -6]] · [1, 0.5, -1] = [-1, 4.5]
        let (y, abs) = reference(&[1.0, 2.0, 3.0, -4.0, 5.0, -6.0], &[1.0, 0.5, -1.0], 2, 3);
        assert_eq!(y, vec![-1.0, 4.5]);
        assert_eq!(abs, vec![5.0, 12.5]);
    }

    #[test]
    fn reference_handles_large_values_without_overflow() {
        let big = f32::MAX / 2.0;
        let (y, _) = reference(&[big, big, -big], &[2.0, 2.0, 2.0], 1, 3);
        assert!(y[0].is_finite() && (y[0] - f64::from(big) * 2.0).abs() < 1e30);
    }

    #[test]
    fn shape_guards() {
        assert!(Matvec::new(0, 3).is_err());
        assert!(Matvec::new(3, 0).is_err());
        assert!(Matvec::new(1 << 17, 1 << 16).is_err());
        assert!(Matvec::new(4096, 4097).is_ok());
    }
}

/// Runs a seeded random `rows × cols` product on the GPU and compares it with the CPU reference
/// under `error_bound`. Shared by the native and browser tests and by the demo page.
pub async fn check_against_reference(ctx: &GpuContext, rows: usize, cols: usize, seed: u64) -> Result<crate::check::Comparison, GpuError> {
    let op = Matvec::new(rows, cols)?;
    let mut rng = crate::rng::SeededRng::new(seed);
    let w = rng.signed_unit_vec(rows * cols);
    let x = rng.signed_unit_vec(cols);
    let y = op.run(ctx, &w, &x).await?;
    let (expected, abs_sums) = reference(&w, &x, rows, cols);
    Ok(crate::check::Comparison::elementwise(&y, &expected, op.error_bound(&abs_sums)))
}
