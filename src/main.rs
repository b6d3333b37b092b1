//! The `pertoken` command line.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    quiet_device_select();
    quiet_broken_pipe();
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

/// Restores the default action of SIGPIPE, so that `pertoken … | head` ends quietly when the
/// reader closes the pipe, as command-line tools do, instead of panicking in `println!` (Rust
/// ignores SIGPIPE, turning a closed pipe into a write error that `println!` panics on).
fn quiet_broken_pipe() {
    #[cfg(unix)]
    #[allow(unsafe_code)]
    // SAFETY: setting a signal's disposition to its default has no preconditions; it runs
    // first thing in main, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
