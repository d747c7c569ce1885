//! Compute pipelines, created once per typed key and cached for the device's lifetime.

use std::collections::HashMap;
use std::sync::Mutex;

use super::context::GpuContext;
use super::error::GpuError;
use super::shaders::{Binding, ShaderId};

/// Everything that makes two pipelines differ: the shader, its entry point and the values of its
/// `override` constants. Tensor shapes are never part of it (they travel in uniforms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub shader: ShaderId,
    pub entry_point: &'static str,
    /// The WGSL `override WG` (invocations per workgroup).
    pub workgroup_size: u32,
    /// The WGSL `override KIND` of modules that specialise on it (the weight type), else None.
    pub kind: Option<u32>,
    /// The WGSL `override TPR` (threads per row) of modules that have it, else None.
    pub threads_per_row: Option<u32>,
    /// The WGSL `override FUSE` (matmul_blocked.wgsl's fused norm and gating), else None.
    pub fuse: Option<u32>,
    /// The WGSL tile overrides (`BM`, `BN`, `TM`, `TN`) of matmul.wgsl, else None.
    pub tile: Option<super::ops::matmul::Tile>,
    /// The WGSL `override SG` of the subgroup modules: lanes a load is shared between (4 or 8).
    pub shared_lanes: Option<u32>,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    modules: Mutex<HashMap<ShaderId, (wgpu::ShaderModule, wgpu::PipelineLayout)>>,
}

fn pipeline_layout(device: &wgpu::Device, shader: ShaderId) -> wgpu::PipelineLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = shader
        .bindings()
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b {
                    Binding::Uniform => wgpu::BufferBindingType::Uniform,
                    Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(shader.name()), entries: &entries });
    device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(shader.name()),
        bind_group_layouts: &[Some(&group)],
        immediate_size: 0,
    })
}

impl GpuContext {
    /// The pipeline for `key`, compiled on first use. Compile errors (the browser's compiler may
    /// reject what naga accepted) come back as `GpuError::Validation` naming the shader.
    pub async fn pipeline(&self, key: PipelineKey) -> Result<wgpu::ComputePipeline, GpuError> {
        if let Some(p) = self.pipelines.pipelines.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(p);
        }
        if key.shader.needs_f16() && !self.features.contains(wgpu::Features::SHADER_F16) {
            return Err(GpuError::MissingFeature { op: "compiling an f16 shader", feature: "shader-f16" });
        }
        if key.shader.needs_subgroups() && !self.features.contains(wgpu::Features::SUBGROUP) {
            return Err(GpuError::MissingFeature { op: "compiling a subgroup shader", feature: "subgroups" });
        }
        let op = format!("compiling {} ({})", key.shader.name(), key.entry_point);
        let cached_module = self.pipelines.modules.lock().ok().and_then(|m| m.get(&key.shader).cloned());
        let mut constants = vec![("WG", f64::from(key.workgroup_size))];
        constants.extend(key.kind.map(|k| ("KIND", f64::from(k))));
        constants.extend(key.threads_per_row.map(|t| ("TPR", f64::from(t))));
        constants.extend(key.fuse.map(|f| ("FUSE", f64::from(f))));
        constants.extend(key.shared_lanes.map(|s| ("SG", f64::from(s))));
        constants.extend(key.tile.into_iter().flat_map(|t| t.overrides()));
        let pipeline = self
            .scoped(&op, || {
                let (module, layout) = cached_module.unwrap_or_else(|| {
                    let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(key.shader.name()),
                        source: wgpu::ShaderSource::Wgsl(key.shader.source().into()),
                    });
                    (module, pipeline_layout(&self.device, key.shader))
                });
                let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(key.shader.name()),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(key.entry_point),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                });
                ((module, layout), pipeline)
            })
            .await?;
        let (module, pipeline) = pipeline;
        if let Ok(mut m) = self.pipelines.modules.lock() {
            m.insert(key.shader, module);
        }
        if let Ok(mut m) = self.pipelines.pipelines.lock() {
            m.insert(key, pipeline.clone());
        }
        Ok(pipeline)
    }
}
