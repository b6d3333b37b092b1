#!/usr/bin/env bash
# Source this on a GPU machine (`. .gpu-run/gpu-env.sh`) before running a pertoken binary built
# elsewhere. It puts the carried Vulkan loader (`lib/` beside this file) on the library path and
# points the loader at the NVIDIA driver's Vulkan ICD: the file the driver ships (also under
# /usr/local/nvidia, where container images mount the driver), else one written here that names
# the driver's libGLX_nvidia.so.0.
#
# A corrected copy of ../shared/remote-gpu/gpu-env.sh, which looked only in /usr/share and /etc.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -n "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
  echo "gpu-env: keeping VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-} VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  return 0 2>/dev/null || exit 0
fi
icd=$(ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json \
  /usr/local/nvidia/share/vulkan/icd.d/nvidia*.json /usr/local/share/vulkan/icd.d/nvidia*.json \
  2>/dev/null | head -n 1)
if [ -n "$icd" ]; then
  export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
  echo "gpu-env: using $icd"
else
  lib=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0/ {print $NF; exit}')
  [ -n "$lib" ] || lib=$(find /usr/local/nvidia /usr/lib /usr/lib64 /lib -name 'libGLX_nvidia.so.0' 2>/dev/null | head -n 1)
  if [ -n "$lib" ]; then
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" >/tmp/nvidia_icd.json
    export VK_DRIVER_FILES=/tmp/nvidia_icd.json VK_ICD_FILENAMES=/tmp/nvidia_icd.json
    echo "gpu-env: wrote /tmp/nvidia_icd.json -> $lib"
  else
    echo "gpu-env: no NVIDIA Vulkan ICD and no libGLX_nvidia.so.0 found: wgpu will see no NVIDIA adapter"
  fi
fi
