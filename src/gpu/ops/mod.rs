//! One file per op: its uniforms struct, its guards, its GPU encoding and its CPU reference.

pub mod attention;
pub mod elementwise;
pub mod embedding;
pub mod matmul;
pub mod matvec;
pub mod norm;
pub mod patches;
pub mod pool;
pub mod product;
pub mod reduce;
pub mod rope;
pub mod sample;

use super::context::GpuContext;
use super::error::GpuError;
use super::pipelines::PipelineKey;
use super::shaders::ShaderId;

/// How a kernel that reduces over a row (a norm, attention's softmax) runs: a workgroup per row
/// with a tree in workgroup memory (GPUs), or an invocation per row on its own (adapters that
/// emulate a GPU on the CPU, where a barrier switches between the invocations' stacks and a
/// reduction across invocations only costs: on SwiftShader MiniLM's LayerNorms and attention took
/// 2/3 of a batch's time as workgroup reductions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Workgroup,
    PerInvocation,
}

impl Reduction {
    pub fn for_device(ctx: &GpuContext) -> Self {
        if ctx.report.is_software() { Reduction::PerInvocation } else { Reduction::Workgroup }
    }
}

/// Invocations per workgroup of the per-invocation kernels (few: a CPU adapter runs a workgroup
/// on one thread, and the rows should spread over its threads).
pub const PER_INVOCATION_WG: u32 = 16;

/// Splits `groups` workgroups into an (x, y) grid within the per-dimension limit, so 1-D work
/// larger than 65535 groups (a 151936-row vocabulary projection) still dispatches.
pub fn grid_2d(groups: u32, max_per_dim: u32) -> Option<(u32, u32)> {
    if groups == 0 {
        return Some((0, 0));
    }
    let x = groups.min(max_per_dim);
    let y = groups.div_ceil(x);
    (y <= max_per_dim).then_some((x, y))
}

/// One compute dispatch: `params` at binding 0, then `buffers` at bindings 1, 2, … as the
/// module's binding list says.
pub(crate) struct Dispatch<'a, P: bytemuck::Pod> {
    pub shader: ShaderId,
    pub entry_point: &'static str,
    pub workgroup_size: u32,
    /// The `override KIND` value, for modules that specialise on it.
    pub kind: Option<u32>,
    /// The `override TPR` value, for modules that have it.
    pub threads_per_row: Option<u32>,
    /// The `override FUSE` value (matmul_blocked.wgsl's fused norm and gating).
    pub fuse: Option<u32>,
    pub params: P,
    pub buffers: &'a [&'a wgpu::Buffer],
    /// Workgroups along x, y and z.
    pub groups: (u32, u32, u32),
}

impl<P: bytemuck::Pod> Dispatch<'_, P> {
    pub async fn encode(self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder) -> Result<(), GpuError> {
        self.encode_with_tile(ctx, encoder, None).await
    }

    /// `encode` with the tile overrides of modules that have them (matmul.wgsl).
    pub async fn encode_with_tile(self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, tile: Option<matmul::Tile>) -> Result<(), GpuError> {
        let op = self.entry_point;
        if self.buffers.len() + 1 != self.shader.bindings().len() {
            return Err(GpuError::Shape { op: "dispatch", detail: format!("{op}: {} buffers for {} bindings", self.buffers.len(), self.shader.bindings().len()) });
        }
        let key = PipelineKey { shader: self.shader, entry_point: self.entry_point, workgroup_size: self.workgroup_size, kind: self.kind, threads_per_row: self.threads_per_row, fuse: self.fuse, tile, shared_lanes: self.shader.needs_subgroups().then(|| ctx.subgroup_sharing()) };
        let pipeline = ctx.pipeline(key).await?;
        let uniforms = ctx.cached_uniform(op, &self.params);
        let mut buffers = vec![&uniforms];
        buffers.extend_from_slice(self.buffers);
        let bind_group = ctx.cached_bind_group(self.shader, op, &pipeline.get_bind_group_layout(0), &buffers);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(op), timestamp_writes: None });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        // The test switch's broken kernels cover half their grid: outputs partly never written.
        let x = if super::context::kernels_broken() { self.groups.0.div_ceil(2) } else { self.groups.0 };
        pass.dispatch_workgroups(x, self.groups.1, self.groups.2);
        drop(pass);
        ctx.count_dispatch();
        if super::context::profiling() {
            // Everything recorded so far goes now, and this dispatch's wait is its time.
            let recorded = std::mem::replace(encoder, new_encoder(ctx, op));
            let t0 = crate::clock::now_ms();
            ctx.queue.submit([recorded.finish()]);
            wait_idle(ctx).await?;
            super::context::add_to_profile(op, crate::clock::now_ms() - t0);
        }
        Ok(())
    }
}

/// The (x, y, 1) grid for `groups` workgroups on this device, or a shape error naming `op`.
pub(crate) fn grid(ctx: &GpuContext, op: &'static str, groups: u64) -> Result<(u32, u32, u32), GpuError> {
    u32::try_from(groups)
        .ok()
        .and_then(|g| grid_2d(g, ctx.limits.max_compute_workgroups_per_dimension))
        .map(|(x, y)| (x, y, 1))
        .ok_or_else(|| GpuError::Shape { op, detail: format!("{groups} workgroups exceed the dispatch grid") })
}

/// Checks that `buffer` holds at least `elems` 4-byte values.
pub(crate) fn check_len(op: &'static str, what: &str, buffer: &wgpu::Buffer, elems: u64) -> Result<(), GpuError> {
    if buffer.size() < elems * 4 {
        return Err(GpuError::Shape { op, detail: format!("{what} has {} bytes, needs {}", buffer.size(), elems * 4) });
    }
    Ok(())
}

/// Submits `encoder` inside error scopes.
pub(crate) async fn submit(ctx: &GpuContext, op: &str, encoder: wgpu::CommandEncoder) -> Result<(), GpuError> {
    ctx.scoped(op, || ctx.queue.submit([encoder.finish()])).await.map(|_| ())
}

/// Waits until the GPU has finished everything submitted so far.
pub(crate) async fn wait_idle(ctx: &GpuContext) -> Result<(), GpuError> {
    let (tx, rx) = futures_channel::oneshot::channel();
    ctx.queue.on_submitted_work_done(move || {
        let _ = tx.send(());
    });
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Readback { detail: e.to_string() })?;
    rx.await.map_err(|_| GpuError::Readback { detail: "work-done callback dropped".into() })
}

pub(crate) fn new_encoder(ctx: &GpuContext, op: &str) -> wgpu::CommandEncoder {
    ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) })
}

#[cfg(test)]
mod tests {
    use super::grid_2d;

    #[test]
    fn grid_covers_every_group_within_limits() {
        assert_eq!(grid_2d(1, 65535), Some((1, 1)));
        assert_eq!(grid_2d(65535, 65535), Some((65535, 1)));
        assert_eq!(grid_2d(151_936, 65535), Some((65535, 3)));
        assert_eq!(grid_2d(u32::MAX, 16), None);
        let (x, y) = grid_2d(100_003, 1000).unwrap();
        assert!(x * y >= 100_003 && x * (y - 1) < 100_003);
    }
}
