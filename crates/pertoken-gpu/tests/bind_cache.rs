//! Launches reuse bind groups and uniform buffers, and the reuse never changes a result: new
//! contents, new parameters and recycled buffers each give what a fresh bind group would.

use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{Binding, DType, Gpu, GpuOptions, Launch, Tensor};
use pertoken_reference::random::uniform_f32;

/// A handle of its own: the cache's counters are per handle, and other tests run beside these.
fn own_gpu() -> Option<Gpu> {
    gpu_or_skip()?;
    Some(Gpu::new(&GpuOptions::from_env().unwrap()).unwrap())
}

/// The copy shader moving the first `vec4s` groups of four floats of `src` into `dst`.
fn copy_prefix(gpu: &Gpu, src: &Tensor, dst: &Tensor, vec4s: u32) {
    gpu.launch(&Launch {
        op: "test copy",
        shader: &pertoken_shaders::COPY,
        constants: &[("WG", 64.0)],
        bindings: &[Binding::whole(src), Binding::whole(dst)],
        params: &bytemuck::cast::<[u32; 4], [u8; 16]>([vec4s, 0, 0, 0]),
        workgroups: [vec4s.div_ceil(256).max(1), 1, 1],
    })
    .unwrap();
}

#[test]
fn the_same_launch_reuses_its_bind_group_and_sees_new_contents() {
    let Some(gpu) = own_gpu() else { return };
    let a = Tensor::from_slice(&gpu, &uniform_f32(1, 1024), &[1024]).unwrap();
    let b = Tensor::zeros(&gpu, &[1024], DType::F32).unwrap();
    pertoken_gpu::copy(&gpu, &a, &b).unwrap();
    let first = gpu.bind_cache_stats();
    let data = uniform_f32(2, 1024);
    a.write(&data).unwrap();
    b.fill(f32::NAN).unwrap();
    pertoken_gpu::copy(&gpu, &a, &b).unwrap();
    let second = gpu.bind_cache_stats();
    assert_eq!(second.hits, first.hits + 1, "{first:?} -> {second:?}");
    assert_eq!(second.misses, first.misses);
    assert_eq!(
        b.to_vec::<f32>().unwrap(),
        data,
        "the reused group reads the new contents"
    );
}

#[test]
fn different_parameters_on_the_same_buffers_get_their_own_uniforms() {
    let Some(gpu) = own_gpu() else { return };
    let data = uniform_f32(3, 1024);
    let a = Tensor::from_slice(&gpu, &data, &[1024]).unwrap();
    let b = Tensor::zeros(&gpu, &[1024], DType::F32).unwrap();
    for vec4s in [16u32, 64, 16, 256] {
        b.fill(f32::NAN).unwrap();
        copy_prefix(&gpu, &a, &b, vec4s);
        let got = b.to_vec::<f32>().unwrap();
        let n = vec4s as usize * 4;
        assert_eq!(got[..n], data[..n], "copied {vec4s} vec4s");
        assert!(
            got[n..].iter().all(|v| v.is_nan()),
            "copied past {vec4s} vec4s"
        );
    }
    let stats = gpu.bind_cache_stats();
    assert_eq!(
        (stats.misses, stats.hits),
        (3, 1),
        "three parameter blocks, one repeated"
    );
}

#[test]
fn dropped_tensors_leave_the_cache_and_new_ones_bind_fresh() {
    let Some(gpu) = own_gpu() else { return };
    for round in 0..64u64 {
        let data = uniform_f32(10 + round, 4096);
        let src = Tensor::from_slice(&gpu, &data, &[4096]).unwrap();
        let dst = Tensor::zeros(&gpu, &[4096], DType::F32).unwrap();
        dst.fill(f32::NAN).unwrap();
        pertoken_gpu::copy(&gpu, &src, &dst).unwrap();
        assert_eq!(dst.to_vec::<f32>().unwrap(), data, "round {round}");
    }
    // Every round's tensors were dropped; the sweep before each launch took their groups.
    let stats = gpu.bind_cache_stats();
    assert_eq!(
        stats.misses, 64,
        "each round's new buffers need a new group"
    );
    assert!(
        stats.entries <= 1,
        "{} stale bind groups kept",
        stats.entries
    );
}
