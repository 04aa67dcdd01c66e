use std::process::ExitCode;

use server::config::Settings;
use server::startup::Application;
use server::telemetry;

/// Each argon2 hash allocates a 19 MiB block. glibc serves a block that size
/// with mmap, but after the first free it raises its mmap threshold and keeps
/// later blocks in its heaps, fragmented and resident: 179 MiB peak RSS after
/// 6 s of logins, against 62 MiB with a fixed threshold (measured with wrk
/// at concurrency 64 on /api/login, VmHWM). A fixed threshold gives every
/// block back to the OS when it is freed.
fn return_large_allocations_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn main() -> ExitCode {
    return_large_allocations_to_the_os();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("folio: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let settings = match Settings::from_env().and_then(|s| s.with_args(std::env::args().skip(1))) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("folio: configuration error: {error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log_filter, settings.log_json);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("folio: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("folio: server error: {error}");
            ExitCode::FAILURE
        }
    }
}
