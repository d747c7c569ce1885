//! Buffer creation with the device's limits checked up front, and readback to the CPU.

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::error::GpuError;

impl GpuContext {
    /// Fails with `BindingTooLarge` when `bytes` cannot be bound as one storage buffer here.
    pub fn check_binding(&self, op: &'static str, what: &'static str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(GpuError::BindingTooLarge { op, what, bytes, limit });
        }
        Ok(())
    }

    /// A read-only storage buffer holding `data`.
    pub fn storage_from<T: bytemuck::Pod>(
        &self,
        op: &'static str,
        what: &'static str,
        data: &[T],
    ) -> Result<wgpu::Buffer, GpuError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_binding(op, what, bytes.len() as u64)?;
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        }))
    }

    /// A writable storage buffer of `bytes` bytes (zeroed), readable back with `read_f32`.
    pub fn storage_output(&self, op: &'static str, what: &'static str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        self.check_binding(op, what, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A uniform buffer holding one params struct.
    pub fn uniform<T: bytemuck::Pod>(&self, what: &'static str, params: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Copies the first `len` f32 of `src` back to the CPU.
    pub async fn read_f32(&self, src: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, GpuError> {
        let bytes = (len as u64) * 4;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.scoped("readback copy", || {
            let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
            encoder.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
            self.queue.submit([encoder.finish()]);
        })
        .await?;

        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = tx.send(result);
        });
        // Natively the map callback only fires from poll; on the web this is a no-op.
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback { detail: e.to_string() })?;
        let mapped = rx.await.map_err(|_| GpuError::Readback { detail: "the map callback was dropped (device lost?)".into() });
        // A lost device fails the map: that is the loss, not a readback fault.
        self.check_alive()?;
        mapped?.map_err(|e| GpuError::Readback { detail: e.to_string() })?;
        let view = staging.get_mapped_range(..).map_err(|e| GpuError::Readback { detail: e.to_string() })?;
        // `pod_collect_to_vec` copies without assuming the mapped bytes are 4-aligned.
        let out = bytemuck::pod_collect_to_vec::<u8, f32>(&view);
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
