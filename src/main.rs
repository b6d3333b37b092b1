//! The `pertoken` command line.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    quiet_device_select();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keeps Mesa's device-select Vulkan layer from printing `error: XDG_RUNTIME_DIR is invalid or
/// not set in the environment.` (twice per device) on headless machines.
///
/// The layer is implicit (loaded into every Vulkan instance) and, to reorder devices for a
/// desktop's compositor, connects to Wayland, which prints that line when there is no session.
/// Without `XDG_RUNTIME_DIR` there is no compositor to serve, and pertoken picks its adapter
/// itself (`--adapter`, `PERTOKEN_ADAPTER`), so the layer has nothing to do: its own switch,
/// `NODEVICE_SELECT=1`, turns it off. A user who set `NODEVICE_SELECT` keeps their value.
fn quiet_device_select() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
    {
        #[allow(unsafe_code)]
        // SAFETY: the first statement of main, before any thread is started (clap, wgpu and the
        // CLI start theirs later), so nothing reads or writes the environment concurrently.
        unsafe {
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    }
}
