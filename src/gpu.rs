//! The one GPU device of the process: burn's wgpu runtime, initialised once, whose wgpu device and
//! queue our own WGSL kernels share. A second `init_with_setup` fails ("Service already
//! initialized"), so everything goes through [`Gpu::shared`].

use burn::tensor::Device;
use burn::tensor::wgpu::{WgpuSetup, wgpu};
use serde::{Deserialize, Serialize};

/// Why no GPU could be had. Cloneable so that the failed first attempt is reported to every caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    #[error("WebGPU is not available in this browser (navigator.gpu is missing)")]
    WebGpuMissing,
    #[error("no GPU adapter could be initialised: {0}")]
    Init(String),
}

/// burn's device plus the raw wgpu handles behind it.
#[derive(Clone, Debug)]
pub struct Gpu {
    pub device: Device,
    pub setup: WgpuSetup,
    /// Browsers often leave the adapter description (wgpu's `name`) empty, e.g. SwiftShader; then
    /// this holds a name made of the vendor, architecture and device the browser does report.
    browser_name: Option<String>,
}

/// What a person (and a test) needs to know about the adapter we run on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A software adapter (lavapipe, SwiftShader): correct but slow.
    pub is_fallback: bool,
    pub max_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_stage: u32,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_workgroup_storage_size: u32,
    pub shader_f16: bool,
    pub subgroups: bool,
    /// Lanes per subgroup where the device has subgroups and the adapter's subgroup size is fixed
    /// (lavapipe: 8, its SIMD width), else 0. The CPU-adapter kernels need exactly 8.
    #[serde(default)]
    pub subgroup_size: u32,
}

/// Why the GPU device was lost, once it was (set by its device-lost callback).
static LOST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl Gpu {
    /// Why the device was lost, if it was. Nothing done on it counts from then on: WebGPU makes
    /// every call on a lost device a no-op and every read-back an error, and burn's runtime
    /// cannot be started a second time in this process (a new page or worker can).
    pub fn lost() -> Option<String> {
        LOST.lock().ok()?.clone()
    }

    fn watch_for_loss(setup: &WgpuSetup) {
        setup.device.set_device_lost_callback(|reason, message| {
            let why = if message.is_empty() {
                format!("{reason:?}")
            } else {
                format!("{reason:?}: {message}")
            };
            if let Ok(mut lost) = LOST.lock() {
                lost.get_or_insert(why);
            }
        });
    }

    /// The process-wide GPU, initialised on first call.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn shared() -> Result<Gpu, GpuError> {
        use std::sync::OnceLock;
        static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();
        GPU.get_or_init(|| {
            Device::wgpu_options()
                .init_with_setup()
                .map(|(device, setup)| {
                    Self::watch_for_loss(&setup);
                    Gpu {
                        device,
                        setup,
                        browser_name: None,
                    }
                })
                .map_err(|e| GpuError::Init(e.to_string()))
        })
        .clone()
    }

    /// The page-wide GPU, initialised on first call. wgpu handles are not `Send` on the web, so the
    /// cell is thread-local (the page has one thread).
    #[cfg(target_arch = "wasm32")]
    pub async fn shared() -> Result<Gpu, GpuError> {
        use std::cell::RefCell;
        thread_local! {
            static GPU: RefCell<Option<Result<Gpu, GpuError>>> = const { RefCell::new(None) };
        }
        if let Some(done) = GPU.with(|g| g.borrow().clone()) {
            return done;
        }
        if !webgpu_present() {
            return Err(GpuError::WebGpuMissing);
        }
        let browser_name = browser_adapter_name().await;
        let result = Device::wgpu_options()
            .init_with_setup_async()
            .await
            .map(|(device, setup)| {
                Self::watch_for_loss(&setup);
                Gpu {
                    device,
                    setup,
                    browser_name,
                }
            })
            .map_err(|e| GpuError::Init(e.to_string()));
        GPU.with(|g| *g.borrow_mut() = Some(result.clone()));
        result
    }

    pub fn wgpu_device(&self) -> &wgpu::Device {
        &self.setup.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.setup.queue
    }

    pub fn report(&self) -> AdapterReport {
        let info = self.setup.adapter.get_info();
        // The device's limits, not the adapter's: they are what our kernels may use.
        let limits = self.setup.device.limits();
        let features = self.setup.device.features();
        let name = match &self.browser_name {
            Some(n) if info.name.is_empty() => n.clone(),
            _ => info.name,
        };
        AdapterReport {
            name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: [info.driver, info.driver_info]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            is_fallback: info.device_type == wgpu::DeviceType::Cpu,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_size: if features.contains(wgpu::Features::SUBGROUP)
                && info.subgroup_min_size == info.subgroup_max_size
            {
                info.subgroup_min_size
            } else {
                0
            },
        }
    }
}

/// Whether the browser exposes `navigator.gpu` at all (checked before asking wgpu, whose error for
/// this case is less clear).
#[cfg(target_arch = "wasm32")]
pub fn webgpu_present() -> bool {
    crate::browser::navigator_gpu().is_some()
}

/// "vendor architecture device" from the browser's `GPUAdapterInfo` (wgpu keeps only the
/// description). The same high-performance adapter wgpu asks for.
#[cfg(target_arch = "wasm32")]
async fn browser_adapter_name() -> Option<String> {
    use js_sys::{Function, Object, Promise, Reflect};
    use wasm_bindgen::JsCast;
    let get = |o: &wasm_bindgen::JsValue, k: &str| Reflect::get(o, &k.into()).ok();
    let gpu = crate::browser::navigator_gpu()?;
    let request: Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
    let options = Object::new();
    Reflect::set(
        &options,
        &"powerPreference".into(),
        &"high-performance".into(),
    )
    .ok()?;
    let promise: Promise = request.call1(&gpu, &options).ok()?.dyn_into().ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let info = get(&adapter, "info")?;
    let parts: Vec<String> = ["description", "vendor", "architecture", "device"]
        .iter()
        .filter_map(|k| get(&info, k)?.as_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.name.is_empty() {
            "(unnamed adapter)"
        } else {
            &self.name
        };
        writeln!(f, "adapter        {name}")?;
        writeln!(f, "backend        {} ({})", self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            writeln!(f, "driver         {}", self.driver)?;
        }
        writeln!(
            f,
            "fallback       {}",
            if self.is_fallback {
                "yes (software, slow)"
            } else {
                "no"
            }
        )?;
        writeln!(
            f,
            "workgroup      {} invocations, {} B shared",
            self.max_invocations_per_workgroup, self.max_workgroup_storage_size
        )?;
        writeln!(
            f,
            "storage        {} buffers/stage, {} MiB/binding, {} MiB/buffer",
            self.max_storage_buffers_per_stage,
            self.max_storage_buffer_binding_size >> 20,
            self.max_buffer_size >> 20
        )?;
        write!(
            f,
            "features       shader-f16 {}, subgroups {}",
            yes_no(self.shader_f16),
            yes_no(self.subgroups)
        )?;
        if self.subgroup_size > 0 {
            write!(f, " ({} lanes)", self.subgroup_size)?;
        }
        Ok(())
    }
}

pub(crate) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
