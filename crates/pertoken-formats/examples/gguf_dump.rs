//! Prints a GGUF file's metadata (arrays by type and length) and tensor table.
//!
//! `cargo run -p pertoken-formats --example gguf_dump -- FILE.gguf [--all-tensors]`

use pertoken_formats::gguf::{Gguf, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: gguf_dump FILE.gguf [--all-tensors]");
        std::process::exit(2);
    };
    let all = args.next().as_deref() == Some("--all-tensors");
    let g = Gguf::open(&path)?;
    println!(
        "{path}: GGUF v{}, alignment {}, data at byte {}",
        g.version(),
        g.alignment(),
        g.data_start()
    );
    println!("{} metadata keys:", g.metadata().len());
    for (key, value) in g.metadata() {
        match value {
            Value::Array(_, items) if items.len() > 8 => println!("  {key} = {}", value.describe()),
            Value::Array(..) => println!("  {key} = {value:?}"),
            _ => println!("  {key} = {}", value.describe()),
        }
    }
    println!("{} tensors (ggml dims, fastest first):", g.tensors().len());
    for t in g.tensors() {
        if all || !t.name.starts_with("blk.") || t.name.starts_with("blk.0.") {
            println!(
                "  {:<28} {:<6} {:?} ({} bytes)",
                t.name,
                t.ggml_type.to_string(),
                t.dims,
                t.size_bytes
            );
        }
    }
    Ok(())
}
