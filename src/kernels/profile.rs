//! GPU time per kernel, from timestamp queries written at the start and end of every compute pass
//! our kernels record (each dispatch is its own pass). Native only: it serves `metaprompt bench
//! kernels`, which has to say which kernel a tuning step spends its time in before any kernel is
//! tuned. Off by default; while off, [`slot`] costs one uncontended lock per dispatch.

use super::KernelError;
use crate::gpu::Gpu;
use burn::tensor::wgpu::wgpu;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// WebGPU's cap on queries per set; a profile grows by whole sets.
const PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES;

struct Profile {
    sets: Vec<wgpu::QuerySet>,
    /// One per profiled dispatch, in recording order: its name and floating-point operations.
    passes: Vec<(String, f64)>,
}

static PROFILE: Mutex<Option<Profile>> = Mutex::new(None);

/// GPU time of one kernel (or one matmul shape), summed over its dispatches.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: String,
    pub calls: usize,
    pub ms: f64,
    /// Floating-point operations over all calls (0 where not counted).
    pub flops: f64,
}

/// Starts recording timestamps for every dispatch from now on. Fails on adapters without
/// timestamp queries (WebGPU's `timestamp-query` feature).
pub fn start(gpu: &Gpu) -> Result<(), String> {
    if !gpu
        .wgpu_device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        return Err(format!(
            "the adapter `{}` has no timestamp queries, so per-kernel GPU time cannot be measured",
            gpu.wgpu_device().adapter_info().name
        ));
    }
    *lock() = Some(Profile {
        sets: Vec::new(),
        passes: Vec::new(),
    });
    Ok(())
}

fn lock() -> std::sync::MutexGuard<'static, Option<Profile>> {
    // A panic while profiling leaves plain data behind; keep using it.
    PROFILE.lock().unwrap_or_else(|e| e.into_inner())
}

/// While profiling: the query set and first index for the next pass's begin/end timestamps.
/// `what` names the dispatch and counts its floating-point operations; called only when on.
pub(crate) fn slot(
    gpu: &Gpu,
    what: impl FnOnce() -> (String, f64),
) -> Option<(wgpu::QuerySet, u32)> {
    let mut guard = lock();
    let p = guard.as_mut()?;
    let index = 2 * p.passes.len() as u32;
    let (set, at) = ((index / PER_SET) as usize, index % PER_SET);
    if set == p.sets.len() {
        p.sets.push(
            gpu.wgpu_device()
                .create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: PER_SET,
                }),
        );
    }
    p.passes.push(what());
    Some((p.sets[set].clone(), at))
}

/// Stops profiling and sums the GPU time of every pass recorded since [`start`] by name, longest
/// first. Call after the profiled work has been submitted.
pub async fn finish(gpu: &Gpu) -> Result<Vec<KernelTime>, KernelError> {
    let Some(p) = lock().take() else {
        return Ok(Vec::new());
    };
    let device = gpu.wgpu_device();
    let mut ticks: Vec<u64> = Vec::with_capacity(2 * p.passes.len());
    for (i, set) in p.sets.iter().enumerate() {
        let used = (2 * p.passes.len() as u32 - i as u32 * PER_SET).min(PER_SET);
        let resolved = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved timestamps"),
            size: used as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = device.create_command_encoder(&Default::default());
        enc.resolve_query_set(set, 0..used, &resolved, 0);
        gpu.queue().submit([enc.finish()]);
        // Two 32-bit words per timestamp, read through the f32 path bit for bit.
        let words = super::read_back(gpu, &resolved, 2 * used as usize).await?;
        let words: &[u32] = bytemuck::cast_slice(&words);
        ticks.extend(
            words
                .chunks_exact(2)
                .map(|w| w[0] as u64 | (w[1] as u64) << 32),
        );
    }
    let ns_per_tick = gpu.queue().get_timestamp_period() as f64;
    let mut by_name: BTreeMap<String, KernelTime> = BTreeMap::new();
    for (i, (name, flops)) in p.passes.into_iter().enumerate() {
        let ns = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * ns_per_tick;
        let t = by_name.entry(name.clone()).or_insert(KernelTime {
            name,
            calls: 0,
            ms: 0.0,
            flops: 0.0,
        });
        t.calls += 1;
        t.ms += ns / 1e6;
        t.flops += flops;
    }
    let mut out: Vec<KernelTime> = by_name.into_values().collect();
    out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(out)
}
