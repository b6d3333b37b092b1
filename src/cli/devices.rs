//! `pertoken devices`.

use super::{CliError, open_gpu};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Show the capabilities of the adapter whose name contains this (default: the one
    /// `pertoken bench` would use).
    #[arg(long)]
    adapter: Option<String>,
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let all = pertoken_gpu::adapters();
    println!("adapters ({}), best first:", all.len());
    for (i, a) in all.iter().enumerate() {
        println!(
            "  [{i}] {} — {:?}, {:?}, driver {} {}",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
    }
    let gpu = open_gpu(args.adapter.as_deref())?;
    let a = gpu.adapter();
    let c = gpu.capabilities();
    println!();
    println!(
        "selected: {} ({:?}, {:?})",
        a.name, a.backend, a.device_type
    );
    println!(
        "  shader f16 in use:     {} (PERTOKEN_SHADER_F16=0|1; default: where the adapter has it, except on CPU adapters)",
        yes_no(c.shader_f16)
    );
    match c.subgroups {
        Some(s) => println!("  subgroups:             yes, size {}..={}", s.min, s.max),
        None => println!("  subgroups:             no"),
    }
    println!(
        "  timestamp queries:     {}{}",
        yes_no(c.timestamp_query),
        if c.timestamp_query {
            format!(" ({} ns per tick)", c.timestamp_period_ns)
        } else {
            String::new()
        }
    );
    println!("  max storage binding:   {}", bytes(c.max_storage_binding));
    println!("  max buffer size:       {}", bytes(c.max_buffer_size));
    println!(
        "  workgroup storage:     {}",
        bytes(u64::from(c.max_workgroup_storage))
    );
    println!(
        "  invocations/workgroup: {}",
        c.max_invocations_per_workgroup
    );
    println!("  workgroup size:        {:?}", c.max_workgroup_size);
    println!(
        "  workgroups/dimension:  {}",
        c.max_workgroups_per_dimension
    );
    println!(
        "  storage buffers/stage: {}",
        c.max_storage_buffers_per_stage
    );
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn bytes(b: u64) -> String {
    const MIB: u64 = 1 << 20;
    if b >= MIB {
        format!("{b} bytes ({:.1} MiB)", b as f64 / MIB as f64)
    } else {
        format!("{b} bytes ({:.1} KiB)", b as f64 / 1024.0)
    }
}
