//! Our WGSL kernels (sources in `shaders/`), each beside its Rust reference twin.
//!
//! Kernels run on burn's wgpu device and queue (see [`crate::gpu`]), so they can later share
//! buffers with burn tensors.

pub mod rms_norm;

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
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),
}

/// How a kernel binds one buffer (in binding order, group 0).
#[derive(Clone, Copy)]
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

pub(crate) fn storage_buffer(
    gpu: &Gpu,
    tensor: &'static str,
    data: &[f32],
    usage: wgpu::BufferUsages,
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
    // A zero-sized binding is invalid in WebGPU; keep at least one element.
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
            usage: wgpu::BufferUsages::STORAGE | usage,
        }))
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
