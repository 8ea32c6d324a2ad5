//! The native CLI: the same library the page runs.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {
    panic!("the metaprompt CLI is native only; the web app is the metaprompt-web binary");
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use clap::{Parser, Subcommand};
    use metaprompt::gpu::Gpu;
    use metaprompt::selfcheck;
    use std::process::ExitCode;

    #[derive(Parser)]
    #[command(
        name = "metaprompt",
        version,
        about = "Few-shot soft-prompt learning on a frozen T5"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Show the GPU adapter wgpu picks and check our WGSL kernels against the Rust reference.
        Gpu {
            /// Rows of the self-check input.
            #[arg(long, default_value_t = 96)]
            rows: usize,
            /// Columns of the self-check input (T5-small's d_model is 512).
            #[arg(long, default_value_t = 512)]
            cols: usize,
        },
    }

    pub fn main() -> ExitCode {
        match Cli::parse().command {
            Command::Gpu { rows, cols } => gpu(rows, cols),
        }
    }

    fn gpu(rows: usize, cols: usize) -> ExitCode {
        let gpu = match pollster::block_on(Gpu::shared()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!(
                    "hint: without a GPU, install a Vulkan CPU driver (Debian: mesa-vulkan-drivers)"
                );
                return ExitCode::FAILURE;
            }
        };
        println!("{}", gpu.report());
        let start = std::time::Instant::now();
        match pollster::block_on(selfcheck::rms_norm_check(&gpu, rows, cols, 42)) {
            Ok(c) => {
                println!(
                    "self-check     {} {}x{}: forward err {:.2e}, backward err {:.2e}, burn err {:.2e} (tolerance {:.0e}) in {:.0} ms: {}",
                    c.kernel,
                    c.rows,
                    c.cols,
                    c.forward_err,
                    c.backward_err,
                    c.burn_err,
                    selfcheck::TOLERANCE,
                    start.elapsed().as_secs_f64() * 1e3,
                    if c.passed() { "ok" } else { "FAILED" }
                );
                if c.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("error: self-check failed: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
