//! The runtime on a real adapter: tensors round-trip, writes are ordered, errors are errors.

use half::f16;
use ndarray::{Array2, ShapeBuilder};
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Error, Tensor, TimingMethod};
use pertoken_reference::random::uniform_f32;

#[test]
fn f32_round_trip() {
    let Some(gpu) = gpu_or_skip() else { return };
    for len in [1usize, 3, 4, 5, 1023] {
        let data = uniform_f32(len as u64, len);
        let t = Tensor::from_slice(&gpu, &data, &[len]).unwrap();
        assert_eq!(t.to_vec::<f32>().unwrap(), data);
        assert_eq!(t.size_in_bytes(), 4 * len as u64);
        assert_eq!(t.buffer().size() % pertoken_gpu::BUFFER_ALIGN, 0);
    }
}

#[test]
fn f16_round_trip_with_odd_length() {
    let Some(gpu) = gpu_or_skip() else { return };
    let data: Vec<f16> = uniform_f32(9, 7).into_iter().map(f16::from_f32).collect();
    let t = Tensor::from_slice(&gpu, &data, &[7]).unwrap();
    assert_eq!(t.dtype(), DType::F16);
    assert_eq!(t.to_vec::<f16>().unwrap(), data);
}

#[test]
fn ndarray_views_of_any_layout_upload_row_major() {
    let Some(gpu) = gpu_or_skip() else { return };
    let a = Array2::from_shape_vec((3, 4).f(), uniform_f32(4, 12)).unwrap();
    let t = Tensor::from_array(&gpu, a.view()).unwrap();
    assert_eq!(t.shape(), &[3, 4]);
    let back = t.to_array::<f32>().unwrap();
    assert_eq!(back, a.into_dyn());
    let tr = Array2::from_shape_vec((2, 5), uniform_f32(5, 10)).unwrap();
    let t = Tensor::from_array(&gpu, tr.t()).unwrap();
    assert_eq!(t.to_array::<f32>().unwrap(), tr.t().into_dyn());
}

#[test]
fn write_and_fill_replace_contents() {
    let Some(gpu) = gpu_or_skip() else { return };
    let t = Tensor::zeros(&gpu, &[2, 3], DType::F32).unwrap();
    t.fill(f32::NAN).unwrap();
    assert!(t.to_vec::<f32>().unwrap().iter().all(|x| x.is_nan()));
    let data = uniform_f32(6, 6);
    t.write(&data).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), data);
}

#[test]
fn wrong_lengths_dtypes_and_shapes_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let err = Tensor::from_slice(&gpu, &[1.5f32, 2.5], &[3]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DataLength {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{err}"
    );
    let t = Tensor::from_slice(&gpu, &[1.5f32, 2.5], &[2]).unwrap();
    assert!(matches!(
        t.to_vec::<f16>(),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(matches!(t.write(&[1.0f32]), Err(Error::DataLength { .. })));
    let err = Tensor::zeros(&gpu, &[usize::MAX, 4], DType::F32).unwrap_err();
    assert!(matches!(err, Error::InvalidShape { .. }), "{err}");
    let limit = gpu.capabilities().max_buffer_size;
    let too_big = (limit / 4 + 1) as usize;
    let err = Tensor::zeros(&gpu, &[too_big, 4], DType::F32).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("max_buffer_size"), "{err}");
}

#[test]
fn capabilities_are_read_from_the_adapter() {
    let Some(gpu) = gpu_or_skip() else { return };
    let caps = gpu.capabilities();
    assert!(caps.max_storage_binding >= 1 << 20);
    assert!(caps.max_invocations_per_workgroup >= 64);
    assert!(caps.max_workgroup_storage >= 16 * 1024);
    if let Some(s) = caps.subgroups {
        assert!(s.min >= 1 && s.min <= s.max, "{s:?}");
    }
    assert!(!gpu.fingerprint().is_empty());
}

#[test]
fn timing_reports_its_method() {
    let Some(gpu) = gpu_or_skip() else { return };
    let ((), timing) = gpu.time(|| Ok(())).unwrap();
    assert_eq!(timing.method, TimingMethod::WallClock);
    assert_eq!(timing.passes, 0);
}

#[test]
fn one_timing_holds_any_number_of_launches() {
    // A batched decode step of a 30-layer model at 16 sequences is ~1500 launches; a timing
    // writes two timestamps however many there are, and the work is what it times.
    let Some(gpu) = gpu_or_skip() else { return };
    let data = uniform_f32(5, 64);
    let a = Tensor::from_slice(&gpu, &data, &[64]).unwrap();
    let b = Tensor::zeros(&gpu, &[64], DType::F32).unwrap();
    let ((), timing) = gpu
        .time(|| {
            for i in 0..3000 {
                let (src, dst) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
                pertoken_gpu::copy(&gpu, src, dst)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(timing.passes, 3000);
    assert!(timing.seconds > 0.0 && timing.seconds.is_finite());
    assert_eq!(b.to_vec::<f32>().unwrap(), data);
}

#[test]
fn quantized_tensors_round_trip_their_bytes() {
    let Some(gpu) = gpu_or_skip() else { return };
    let bytes: Vec<u8> = (0..3 * 2 * 18).map(|i| (i * 37 % 251) as u8).collect();
    let t = Tensor::from_quantized(&gpu, &bytes, &[3, 64], DType::Q4_0).unwrap();
    assert_eq!(t.size_in_bytes(), bytes.len() as u64);
    assert_eq!(t.to_bytes().unwrap(), bytes);
    assert!(matches!(
        t.to_vec::<f32>(),
        Err(Error::DTypeMismatch { .. })
    ));
    let err = Tensor::from_quantized(&gpu, &bytes, &[3, 64], DType::F32).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

#[test]
fn copy_kernel_copies_and_measures_bandwidth() {
    let Some(gpu) = gpu_or_skip() else { return };
    for len in [1usize, 3, 4, 1000, 4099] {
        let data = uniform_f32(len as u64, len);
        let src = Tensor::from_slice(&gpu, &data, &[len]).unwrap();
        let dst = Tensor::zeros(&gpu, &[len], DType::F32).unwrap();
        dst.fill(f32::NAN).unwrap();
        pertoken_gpu::copy(&gpu, &src, &dst).unwrap();
        assert_eq!(dst.to_vec::<f32>().unwrap(), data);
    }
    let a = Tensor::zeros(&gpu, &[8], DType::F32).unwrap();
    let b = Tensor::zeros(&gpu, &[9], DType::F32).unwrap();
    assert!(matches!(
        pertoken_gpu::copy(&gpu, &a, &b),
        Err(Error::ShapeMismatch { .. })
    ));
    let bw = pertoken_gpu::measure_bandwidth(&gpu, 1 << 20, 3).unwrap();
    assert_eq!(bw.bytes, 1 << 20);
    assert!(bw.bytes_per_second() > 0.0 && bw.bytes_per_second().is_finite());
    assert!(bw.best_seconds > 0.0 && bw.best_seconds <= bw.seconds);
}

#[test]
fn misaligned_binding_windows_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let src = Tensor::from_slice(&gpu, &uniform_f32(1, 1024), &[1024]).unwrap();
    let dst = Tensor::zeros(&gpu, &[1024], DType::F32).unwrap();
    let err = gpu
        .launch(&pertoken_gpu::Launch {
            op: "test",
            shader: &pertoken_shaders::COPY,
            constants: &[],
            bindings: &[
                pertoken_gpu::Binding::window(&src, 4, 64),
                pertoken_gpu::Binding::whole(&dst),
            ],
            params: &[0; 16],
            workgroups: [1, 1, 1],
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidShape { .. }), "{err}");
}

#[test]
fn time_each_runs_and_times_every_launch_alone() {
    // The handle the other tests of this binary share from other threads: a timing holds only
    // its own thread's launches (they wait meanwhile).
    let Some(gpu) = gpu_or_skip() else { return };
    let v: Vec<f32> = (0..4096).map(|i| i as f32 * 0.5 - 7.0).collect();
    let a = Tensor::from_slice(&gpu, &v, &[4096]).unwrap();
    let b = Tensor::zeros(&gpu, &[4096], DType::F32).unwrap();
    let c = Tensor::zeros(&gpu, &[4096], DType::F32).unwrap();
    let ((), log) = gpu
        .time_each(|| {
            pertoken_gpu::copy(&gpu, &a, &b)?;
            pertoken_gpu::copy(&gpu, &b, &c)
        })
        .unwrap();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|(_, t)| t.seconds > 0.0 && t.passes == 1));
    assert_eq!(c.to_vec::<f32>().unwrap(), v, "the launches ran, in order");
    // Outside time_each, launches record as before.
    pertoken_gpu::copy(&gpu, &c, &b).unwrap();
    let ((), t) = gpu.time(|| pertoken_gpu::copy(&gpu, &a, &c)).unwrap();
    assert_eq!(t.passes, 1);
}

#[test]
fn a_timing_holds_its_own_threads_launches_while_another_thread_launches() {
    let Some(gpu) = gpu_or_skip() else { return };
    let a = Tensor::from_slice(&gpu, &uniform_f32(31, 1024), &[1024]).unwrap();
    let (b, c) = (
        Tensor::zeros(&gpu, &[1024], DType::F32).unwrap(),
        Tensor::zeros(&gpu, &[1024], DType::F32).unwrap(),
    );
    let busy = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|s| {
        // Another thread launches copies all along (at most 5000, so that a failed assertion
        // below cannot leave it running), far more than one timing may hold.
        let other = s.spawn(|| {
            let mut n = 0u32;
            while n < 5000 && (busy.load(std::sync::atomic::Ordering::Relaxed) || n < 1500) {
                pertoken_gpu::copy(&gpu, &a, &c)?;
                n += 1;
                if n.is_multiple_of(64) {
                    gpu.sync()?;
                }
            }
            gpu.sync()
        });
        for _ in 0..30 {
            let ((), t) = gpu
                .time(|| {
                    (0..4).try_for_each(|_| {
                        std::thread::yield_now();
                        pertoken_gpu::copy(&gpu, &a, &b)
                    })
                })
                .unwrap();
            if t.method == TimingMethod::Timestamp {
                assert_eq!(t.passes, 4, "the timing counted another thread's launches");
            }
        }
        busy.store(false, std::sync::atomic::Ordering::Relaxed);
        other.join().unwrap().unwrap();
    });
    assert_eq!(c.to_vec::<f32>().unwrap(), a.to_vec::<f32>().unwrap());
}

#[test]
fn views_and_range_writes_share_the_buffer() {
    let Some(gpu) = gpu_or_skip() else { return };
    let t = Tensor::from_slice(&gpu, &[1u32, 2, 3, 4, 5, 6], &[6]).unwrap();
    t.write_range(2, &[30u32, 40]).unwrap();
    let v = t.view(&[2, 2]).unwrap();
    assert_eq!(v.to_vec::<u32>().unwrap(), vec![1, 2, 30, 40]);
    assert!(t.view(&[9]).is_err(), "a view past the buffer");
    assert!(
        t.write_range(5, &[1u32, 2]).is_err(),
        "a write past the end"
    );
    let h = Tensor::from_slice(&gpu, &[half::f16::ONE; 4], &[4]).unwrap();
    assert!(
        h.write_range(1, &[half::f16::ZERO; 2]).is_err(),
        "not whole words"
    );
}

#[test]
fn allocations_past_the_memory_limit_are_out_of_memory_errors_naming_the_op() {
    use pertoken_gpu::{Gpu, GpuOptions};
    if gpu_or_skip().is_none() {
        return;
    }
    let options = GpuOptions {
        memory_limit: Some(1 << 20),
        ..GpuOptions::from_env().unwrap()
    };
    let gpu = Gpu::new(&options).unwrap();
    assert_eq!(gpu.memory_limit(), Some(1 << 20));
    let quarter = 1usize << 16; // f32 elements in 256 KiB
    let data = uniform_f32(7, quarter);
    let a = Tensor::from_slice(&gpu, &data, &[quarter]).unwrap();
    let b = Tensor::zeros(&gpu, &[2 * quarter], DType::F32).unwrap();
    // A view shares its tensor's buffer and takes nothing more.
    let view = a.view(&[quarter / 2]).unwrap();
    assert_eq!(gpu.memory_in_use(), 3 << 18);
    // 256 KiB are left: 16 bytes more is past the limit.
    let more = uniform_f32(8, quarter + 4);
    let err = Tensor::from_slice(&gpu, &more, &[quarter + 4])
        .map(|_| ())
        .unwrap_err();
    let oom = |e: &Error, op: &str| matches!(e, Error::OutOfMemory { op: o, .. } if *o == op);
    assert!(oom(&err, "Tensor::from_slice"), "{err}");
    assert!(
        err.to_string().contains("memory limit of 1048576 bytes"),
        "{err}"
    );
    let q = vec![0x5au8; 34 * 8192]; // 272 KiB, past the 256 KiB left
    let err = Tensor::from_quantized(&gpu, &q, &[256, 1024], DType::Q8_0).unwrap_err();
    assert!(oom(&err, "Tensor::from_quantized"), "{err}");
    // The handle still works, and what fit still holds its data.
    assert_eq!(a.to_vec::<f32>().unwrap(), data);
    drop(a);
    assert_eq!(
        gpu.memory_in_use(),
        3 << 18,
        "the view still holds a's buffer"
    );
    drop(view);
    assert_eq!(gpu.memory_in_use(), 2 << 18);
    let c = Tensor::from_slice(&gpu, &data, &[quarter]).unwrap();
    assert_eq!(c.to_vec::<f32>().unwrap(), data);
    drop((b, c));
    assert_eq!(gpu.memory_in_use(), 0);
}

#[test]
fn memory_limits_parse_as_binary_byte_counts() {
    assert_eq!(pertoken_gpu::parse_bytes("96M"), Some(96 << 20));
    // from_env reads the process environment: checked through the parser it uses, so the test
    // does not race other tests' environment.
    assert_eq!(pertoken_gpu::parse_bytes("lots"), None);
}
