//! Our WGSL kernels (sources in `shaders/`), each beside its Rust reference twin.
//!
//! Kernels run on burn's wgpu device and queue (see [`crate::gpu`]), so they can later share
//! buffers with burn tensors.

pub mod adapter;
pub mod attention;
pub mod cross_entropy;
pub mod distill;
pub mod gated_gelu;
pub mod matmul;
pub mod ops;
#[cfg(not(target_arch = "wasm32"))]
pub mod profile;
pub mod rms_norm;
pub mod scale_add;

pub use ops::{GpuOps, GpuT5};

use crate::gpu::Gpu;
use burn::tensor::wgpu::wgpu;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    #[error("tensor `{tensor}` has {got} elements, expected {expected} ({why})")]
    Shape {
        tensor: &'static str,
        expected: usize,
        got: usize,
        why: String,
    },
    #[error(
        "tensor `{tensor}` needs {bytes} bytes, over this adapter's {limit}-byte binding limit"
    )]
    TooLarge {
        tensor: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error("weight `{tensor}` is stored as f32; the int8 matmul kernel needs a quantised weight")]
    NotQuantized { tensor: String },
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),
}

/// How a kernel binds one buffer (in binding order, group 0).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    Read,
    ReadWrite,
    Uniform,
}

/// An explicit pipeline layout: wgpu's automatic layout drops bindings an entry point does not use,
/// and then one bind group cannot serve every entry point of a shader.
pub(crate) fn pipeline_layout(
    gpu: &Gpu,
    label: &str,
    bindings: &[Binding],
) -> wgpu::PipelineLayout {
    let device = gpu.wgpu_device();
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b {
                    Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    Binding::Uniform => wgpu::BufferBindingType::Uniform,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    });
    device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&group)],
        immediate_size: 0,
    })
}

/// One WGSL module's compute pipelines, all on one explicit layout so a single bind group shape
/// serves every entry point.
pub(crate) struct Shader {
    label: &'static str,
    pipelines: Vec<(&'static str, wgpu::ComputePipeline)>,
    params: std::sync::Mutex<ParamArena>,
}

/// Every dispatch's uniform parameters, each in its own 256-byte slot of a shared buffer and
/// written with `queue.write_buffer` (applied at the next submit, before its commands). A fresh
/// buffer per dispatch (`create_buffer_init`: a buffer, a staging buffer and a copy each) was a
/// third of a tuning step's wall-clock time on an H100, spent recording. Slots are never reused:
/// a full arena is replaced (the old one lives on in its bind groups), so no write can overtake
/// a dispatch that still reads the slot.
#[derive(Default)]
struct ParamArena {
    buffer: Option<wgpu::Buffer>,
    next: u64,
}

impl ParamArena {
    const SLOTS: u64 = 1024;

    /// A slot holding `bytes`: the arena buffer and the slot's offset.
    fn put(&mut self, gpu: &Gpu, label: &str, bytes: &[u8]) -> (wgpu::Buffer, u64) {
        let align = (gpu
            .wgpu_device()
            .limits()
            .min_uniform_buffer_offset_alignment as u64)
            .max(bytes.len() as u64)
            .next_power_of_two();
        let size = align * Self::SLOTS;
        let buffer = match &self.buffer {
            Some(b) if self.next + align <= b.size() => b.clone(),
            _ => {
                self.next = 0;
                let b = gpu.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.buffer = Some(b.clone());
                b
            }
        };
        let at = self.next;
        gpu.queue().write_buffer(&buffer, at, bytes);
        self.next += align;
        (buffer, at)
    }
}

impl Shader {
    pub(crate) fn new(
        gpu: &Gpu,
        label: &'static str,
        source: &str,
        bindings: &[Binding],
        entries: &[&'static str],
    ) -> Self {
        let device = gpu.wgpu_device();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let mut all = bindings.to_vec();
        all.push(Binding::Uniform);
        let layout = pipeline_layout(gpu, label, &all);
        let pipelines = entries
            .iter()
            .map(|&entry| {
                let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (entry, p)
            })
            .collect();
        Self {
            label,
            pipelines,
            params: Default::default(),
        }
    }

    /// Records one dispatch of `entry` over `groups` workgroups (laid out by [`grid`]; the shader
    /// gets `groups_x` through its parameters) with `buffers` bound in order and `params` as the
    /// uniform after them.
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        entry: &str,
        buffers: &[&wgpu::Buffer],
        params: &P,
        groups: (u32, u32),
    ) {
        let label = self.label;
        let what = || (format!("{} {entry}", label.trim_end_matches(".wgsl")), 0.0);
        self.dispatch_named(gpu, encoder, entry, buffers, params, groups, what);
    }

    /// [`Self::dispatch`] with the name and floating-point operation count the kernel profile
    /// (`metaprompt bench kernels`) files it under.
    #[allow(clippy::too_many_arguments)] // dispatch's operands plus the profile's name
    pub(crate) fn dispatch_named<P: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        entry: &str,
        buffers: &[&wgpu::Buffer],
        params: &P,
        groups: (u32, u32),
        #[allow(unused_variables)] what: impl FnOnce() -> (String, f64),
    ) {
        let pipeline = &self
            .pipelines
            .iter()
            .find(|(e, _)| *e == entry)
            .unwrap_or_else(|| panic!("{} has no entry point {entry}", self.label))
            .1;
        let device = gpu.wgpu_device();
        let bytes = bytemuck::bytes_of(params);
        let (uniform, at) = self
            .params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(gpu, self.label, bytes);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .map(|b| b.as_entire_binding())
            .chain(std::iter::once(wgpu::BindingResource::Buffer(
                wgpu::BufferBinding {
                    buffer: &uniform,
                    offset: at,
                    size: wgpu::BufferSize::new(bytes.len() as u64),
                },
            )))
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        #[cfg(not(target_arch = "wasm32"))]
        let slot = profile::slot(gpu, what);
        #[cfg(target_arch = "wasm32")]
        let slot: Option<(wgpu::QuerySet, u32)> = None;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(entry),
            timestamp_writes: slot
                .as_ref()
                .map(|(set, at)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(*at),
                    end_of_pass_write_index: Some(at + 1),
                }),
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }
}

/// Whether this adapter gets the kernel variants for CPU adapters (`matmul_q8_rows.wgsl`,
/// `attention_tiles.wgsl`, `rms_norm.wgsl`'s row-per-invocation entry points) by default: native
/// fallback adapters (lavapipe), where they were measured, with [`lanes8`]. In the browser the fallback adapter is SwiftShader, where they are
/// not measured, so it keeps the GPU variants.
pub(crate) fn cpu_variants(gpu: &Gpu) -> bool {
    gpu.report().is_fallback && cfg!(not(target_arch = "wasm32")) && lanes8(gpu)
}

/// Whether the CPU-adapter kernels can run: they share loads across a workgroup of 8 invocations
/// with `subgroupBroadcast`, so a workgroup must be exactly one subgroup of 8 lanes (lavapipe on a
/// 256-bit SIMD CPU). Elsewhere they fall back to the GPU variants.
pub(crate) fn lanes8(gpu: &Gpu) -> bool {
    gpu.report().subgroup_size == 8
}

/// The WGSL of a shader that uses subgroup built-ins: browsers (Tint) require the `enable
/// subgroups;` directive, which naga (native) does not parse yet.
pub(crate) fn subgroup_source(src: &str) -> std::borrow::Cow<'_, str> {
    if cfg!(target_arch = "wasm32") {
        format!("enable subgroups;\n{src}").into()
    } else {
        src.into()
    }
}

/// A benchmark override of a kernel variant from the environment variable `var` (native only):
/// the chosen value if it is one of `choices`, else a warning and `None`.
pub(crate) fn variant_override(var: &str, choices: &[&'static str]) -> Option<&'static str> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(v) = std::env::var(var) {
        match choices.iter().find(|c| **c == v) {
            Some(c) => return Some(c),
            None => eprintln!("{var}={v:?}: expected one of {choices:?}; using the default"),
        }
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (var, choices);
    None
}

/// A storage buffer of `len` zeros (f32 or u32 words) that can be copied from and to.
pub(crate) fn zeros(gpu: &Gpu, label: &str, len: usize) -> wgpu::Buffer {
    gpu.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (len.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// A storage buffer holding `data` (any plain 4-byte words), copyable both ways.
pub(crate) fn upload<T: bytemuck::Pod>(
    gpu: &Gpu,
    tensor: &'static str,
    data: &[T],
) -> Result<wgpu::Buffer, KernelError> {
    let bytes = std::mem::size_of_val(data) as u64;
    let limit = gpu.wgpu_device().limits().max_storage_buffer_binding_size;
    if bytes > limit {
        return Err(KernelError::TooLarge {
            tensor,
            bytes,
            limit,
        });
    }
    use wgpu::util::DeviceExt;
    let contents: &[u8] = if data.is_empty() {
        &[0; 4]
    } else {
        bytemuck::cast_slice(data)
    };
    Ok(gpu
        .wgpu_device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(tensor),
            contents,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        }))
}

/// Workgroups for `n` invocations at `per_group` each, as a [`grid`].
pub(crate) fn groups_for(n: usize, per_group: usize) -> (u32, u32) {
    grid(n.div_ceil(per_group) as u32)
}

/// WebGPU allows at most 65,535 workgroups per dispatch dimension; larger counts are laid out as a
/// 2-D grid and the kernel recomputes the flat index as `x + y * groups_x`.
pub(crate) fn grid(groups: u32) -> (u32, u32) {
    const MAX: u32 = 65_535;
    if groups <= MAX {
        (groups.max(1), 1)
    } else {
        (MAX, groups.div_ceil(MAX))
    }
}

pub(crate) fn check_len(
    tensor: &'static str,
    got: usize,
    expected: usize,
    why: impl Into<String>,
) -> Result<(), KernelError> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::Shape {
            tensor,
            expected,
            got,
            why: why.into(),
        })
    }
}

/// Copies `len` f32s out of a storage buffer. Awaits the map on the web; polls the device natively.
pub(crate) async fn read_back(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<f32>, KernelError> {
    let device = gpu.wgpu_device();
    let size = (len.max(1) * 4) as u64;
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read_back"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size);
    gpu.queue().submit([encoder.finish()]);

    let (tx, rx) = futures_channel::oneshot::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    #[cfg(not(target_arch = "wasm32"))]
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| KernelError::Readback(e.to_string()))?;
    rx.await
        .map_err(|_| KernelError::Readback("the map callback was dropped".into()))?
        .map_err(|e| KernelError::Readback(e.to_string()))?;
    let mut out: Vec<f32> = {
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| KernelError::Readback(e.to_string()))?;
        bytemuck::cast_slice(&view).to_vec()
    };
    staging.unmap();
    out.truncate(len);
    Ok(out)
}

/// Largest absolute difference between two equally long slices (parity tests and self-checks).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(
        a.len(),
        b.len(),
        "max_abs_diff on slices of different length"
    );
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
