//! A lost device is an error that names the operation: never a hang, never a panic.

use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Error, Gpu, GpuOptions, Tensor};
use pertoken_reference::random::uniform_f32;

fn lost(r: Result<impl std::fmt::Debug, Error>, op: &str) {
    match r {
        Err(e @ Error::DeviceLost { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with(op), "names the op: {text}");
            assert!(text.contains("restart"), "says what to do: {text}");
        }
        other => panic!("{op}: expected DeviceLost, got {other:?}"),
    }
}

#[test]
fn work_after_the_device_is_lost_is_an_error_naming_the_op() {
    if gpu_or_skip().is_none() {
        return;
    }
    // A handle of its own: the loss must not reach the other tests' shared handle.
    let gpu = Gpu::new(&GpuOptions::from_env().unwrap()).unwrap();
    let a = Tensor::from_slice(&gpu, &uniform_f32(1, 1024), &[1024]).unwrap();
    let b = Tensor::zeros(&gpu, &[1024], DType::F32).unwrap();
    pertoken_gpu::copy(&gpu, &a, &b).unwrap();
    gpu.sync().unwrap();
    gpu.device().destroy();
    // The callback may run at the next poll: a sync after destroy reports the loss either way.
    let _ = gpu.sync();
    lost(pertoken_gpu::copy(&gpu, &a, &b), "copy");
    lost(b.to_vec::<f32>(), "download");
    lost(Tensor::zeros(&gpu, &[1024], DType::F32), "Tensor::zeros");
    lost(gpu.sync(), "sync");
}
