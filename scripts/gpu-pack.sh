#!/usr/bin/env bash
# Gathers .gpu-run/ (ignored by git) for a GPU machine with no Rust toolchain: the release
# binary, the GPU crates' test binaries, the Vulkan loader and the glvnd libraries the NVIDIA
# driver's Vulkan ICD loads (the lent H100 image has the driver's libGLX_nvidia.so.0 but not
# libGLdispatch.so.0: without it the loader lists no adapter), and the scripts that run there.
# Run from anywhere in the repository; then, on the GPU machine, from the repository root:
#   bash .gpu-run/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu-run/' .git/info/exclude 2>/dev/null || echo '/.gpu-run/' >>.git/info/exclude
cargo build --release
rm -rf .gpu-run /tmp/pertoken-gpu-tests
mkdir -p .gpu-run/lib /tmp/pertoken-gpu-tests
strip -o .gpu-run/pertoken target/release/pertoken
cp scripts/gpu-env.sh scripts/gpu-check.sh .gpu-run/
for lib in libvulkan.so.1 libGLdispatch.so.0 libGLX.so.0 libEGL.so.1 libGL.so.1 libOpenGL.so.0; do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ {print $NF; exit}')
  [ -n "$path" ] || { echo "gpu-pack: $lib not found (apt-get install libvulkan1 libglvnd0 libgl1 libegl1 libopengl0)"; exit 1; }
  cp -L "$path" .gpu-run/lib/
done
# The GPU crates' tests (the CLI tests need the source tree's binary path, the others no GPU).
cargo test --no-run -p pertoken-gpu -p pertoken-matmul -p pertoken-attention -p pertoken-model 2>&1 |
  sed -n 's/.*Executable .* (\(target\/[^)]*\))/\1/p' |
  while read -r bin; do
    name=$(basename "$bin")
    # Test files of the same name in two crates (tune.rs, common): keep the hash on the second.
    out="/tmp/pertoken-gpu-tests/${name%-*}"
    [ -e "$out" ] && out="/tmp/pertoken-gpu-tests/$name"
    strip -o "$out" "$bin"
  done
tar -cJf .gpu-run/tests.tar.xz -C /tmp/pertoken-gpu-tests .
du -sh .gpu-run
