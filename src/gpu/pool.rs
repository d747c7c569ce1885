//! A pool of storage buffers for activations and scratch: buffers are kept by power-of-two size
//! class and handed out again, so a decode loop allocates nothing after its first step.

use std::collections::HashMap;
use std::sync::Mutex;

use super::context::GpuContext;
use super::error::GpuError;

/// The usage every pooled buffer has: bindable, copyable both ways.
const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

#[derive(Default)]
pub struct BufferPool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    /// One persistent buffer per name, for scratch that an op writes and reads within its own
    /// encoding (the f16 matvec's staged activations).
    scratch: Mutex<HashMap<&'static str, wgpu::Buffer>>,
}

/// The size class of a request: the next power of two, at least 256 bytes.
fn class(bytes: u64) -> u64 {
    bytes.max(256).next_power_of_two()
}

impl BufferPool {
    /// A buffer of at least `bytes` (its contents are whatever the last user left).
    pub fn take(&self, ctx: &GpuContext, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let size = class(bytes);
        ctx.check_binding("buffer pool", "a pooled buffer", size)?;
        if let Some(buffer) = self.free.lock().ok().and_then(|mut f| f.get_mut(&size).and_then(Vec::pop)) {
            return Ok(buffer);
        }
        ctx.count_created();
        Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("pooled"), size, usage: USAGE, mapped_at_creation: false }))
    }

    /// Returns a buffer from `take` for reuse. Buffers of other origins are dropped.
    ///
    /// Each size class is kept in one order (by the buffers' identities, `take` handing out the
    /// lowest first) whatever order they come back in: a pass that asks for the same sizes as the
    /// one before then gets the same buffers, and finds its bind groups in the context's cache.
    pub fn give(&self, buffer: wgpu::Buffer) {
        if buffer.usage() == USAGE && buffer.size().is_power_of_two()
            && let Ok(mut free) = self.free.lock() {
                let class = free.entry(buffer.size()).or_default();
                let at = class.partition_point(|b| *b > buffer);
                class.insert(at, buffer);
            }
    }

    /// The scratch buffer `name` (at least `bytes`, contents undefined), grown when too small.
    /// Only for data an op writes and then reads in passes it encodes itself: the queue runs
    /// passes in order, so every user of the same scratch in one command buffer or in later ones
    /// sees its own data. Rejected: `take`/`give` around the encoding, which would hand the
    /// buffer to a caller whose `queue.write_buffer` lands before our passes run.
    pub fn scratch(&self, ctx: &GpuContext, name: &'static str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let size = class(bytes);
        ctx.check_binding("buffer pool", name, size)?;
        let mut scratch = self.scratch.lock().map_err(|_| GpuError::Internal { op: name.into(), message: "scratch lock poisoned".into() })?;
        if let Some(buffer) = scratch.get(name).filter(|b| b.size() >= size) {
            return Ok(buffer.clone());
        }
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some(name), size, usage: USAGE, mapped_at_creation: false });
        scratch.insert(name, buffer.clone());
        Ok(buffer)
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> u64 {
        self.free.lock().map(|f| f.iter().map(|(size, v)| size * v.len() as u64).sum()).unwrap_or(0)
    }

    /// Drops every idle buffer and scratch buffer (frees GPU memory once no pending work uses them).
    pub fn clear(&self) {
        if let Ok(mut free) = self.free.lock() {
            free.clear();
        }
        if let Ok(mut scratch) = self.scratch.lock() {
            scratch.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_classes() {
        assert_eq!(super::class(1), 256);
        assert_eq!(super::class(257), 512);
        assert_eq!(super::class(4096), 4096);
    }
}
