#!/usr/bin/env bash
# One call on a lent GPU machine (scripts/gpu-pack.sh prepares .gpu-run/ first): what the driver
# offers, the default `pertoken bench` (tuned) with attention, then the GPU test binaries, then
# the attention questions still open (every candidate decode plan, `--decode-plans`; f16 decode
# through packed-word loads against f16 loads; head_dim 256). Logs land in $OUT (the device tool's folder that comes back), else
# /tmp/gpu-out; the tail is a summary. Usage, from the repository root there:
#   bash .gpu-run/gpu-check.sh [bench seconds, default 150] [test seconds, default 120]
#                              [attention seconds, default 60]
set -u
R=.gpu-run
O=${OUT:-/tmp/gpu-out}
mkdir -p "$O"
bench_s=${1:-150}
test_s=${2:-120}
attention_s=${3:-60}
start=$(date +%s)

{
  echo "== nvidia-smi"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv 2>&1
  echo "== Vulkan ICD files"
  ls -l /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
  . "$R/gpu-env.sh"
  echo "== pertoken devices"
  "$R/pertoken" devices 2>&1
} >"$O/probe.log" 2>&1
cat "$O/probe.log"
. "$R/gpu-env.sh" >/dev/null
export PERTOKEN_CACHE_DIR=/tmp/ptcache RUST_BACKTRACE=1

echo "== bench (tuned, ${bench_s}s limit)"
timeout "$bench_s" "$R/pertoken" bench kernels --sizes 1024,2048,4096 --attention 512,1024,2048 \
  --decode-context 512,4096,8192,32768 --repeats 9 --json "$O/bench.json" >"$O/bench.log" 2>&1
echo "bench exit $? after $(( $(date +%s) - start ))s"

echo "== model bench: synthetic llama-3.1-8b, Q4_0 and F16 (${bench_s}s limit)"
# Batch 8 and 32 too (the issue's record), priced by the adapter's catalog match, with the plot.
timeout "$bench_s" "$R/pertoken" bench -m llama-3.1-8b --weights q4_0,f16 -p 512 -n 128 -r 3 \
  -b 1,8,32 --json "$O/model.json" --plot "$O/model.svg" >"$O/model.log" 2>&1
echo "model bench exit $? after $(( $(date +%s) - start ))s"
cat "$O/model.log"

echo "== serving: synthetic llama-3.1-8b Q4_0 and F16, --isl 512 --osl 128, concurrency 1,8,32,128 (${bench_s}s limit)"
# Issue 24's GPU record: output tokens/s, TPOT, $/1M at the catalog price, the cost model's
# prediction beside each, and concurrency 128 against 1.
timeout "$bench_s" "$R/pertoken" bench --serve -m llama-3.1-8b --weights q4_0,f16 --isl 512 \
  --osl 128 --concurrency 1,8,32,128 --json "$O/serve.json" --plot "$O/serve.svg" \
  >"$O/serve.log" 2>&1
echo "serving bench exit $? after $(( $(date +%s) - start ))s"
cat "$O/serve.log"

echo "== fusion A/B: a synthetic llama-3.1-8b Q4_0 decode step with each fusion (60s limit)"
# Both fusions default on GPUs but were measured only on lavapipe (slower there): this is the
# number that decides the GPU default.
for f in none gate norm gate,norm; do
  timeout 60 "$R/pertoken" generate --model llama-3.1-8b --weights q4_0 --prompt-ids 1,2,3,4 -n 4 \
    --profile 9 --fuse "$f" 2>&1 | grep -E "profile|recording" | sed "s/^/[$f] /"
done

# The SmolLM2 GGUF (98 MB) cannot be carried to this machine (64 MiB): its tests skip here.
export PERTOKEN_REQUIRE_MODEL=0
echo "== tests (${test_s}s limit)"
mkdir -p /tmp/pertoken-tests && tar -xJf "$R/tests.tar.xz" -C /tmp/pertoken-tests
deadline=$(( $(date +%s) + test_s ))
for t in /tmp/pertoken-tests/*; do
  left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 5 ] || { echo "$(basename "$t"): skipped, out of time"; continue; }
  echo "=== $(basename "$t")" >>"$O/tests.log"
  PERTOKEN_REQUIRE_GPU=1 timeout "$left" "$t" >/tmp/pertoken-test.log 2>&1
  rc=$?
  cat /tmp/pertoken-test.log >>"$O/tests.log"
  echo "$(basename "$t"): exit $rc $(grep -E '^test result' /tmp/pertoken-test.log | tail -1)"
done
grep -h -E '^test .* FAILED|panicked' "$O/tests.log" | head -20
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv 2>&1
echo "== bench log"
cat "$O/bench.log"

echo "== attention questions (${attention_s}s limit)"
deadline=$(( $(date +%s) + attention_s ))
decode=(bench kernels --no-tune --sizes none --linear none --repeats 15)
for run in "default:--decode-context 32768,8192,4096 --decode-plans" \
  "PERTOKEN_SHADER_F16=0:--decode-context 32768,4096" \
  "default:--attention 1024 --decode-context 4096,32768 --head-dim 256"; do
  env_set=${run%%:*}
  left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 5 ] || { echo "skipped, out of time: $run"; continue; }
  echo "=== $run" | tee -a "$O/attention.log"
  # shellcheck disable=SC2086
  if [ "$env_set" = default ]; then
    timeout "$left" "$R/pertoken" "${decode[@]}" ${run#*:} >>"$O/attention.log" 2>&1
  else
    env "$env_set" timeout "$left" "$R/pertoken" "${decode[@]}" ${run#*:} >>"$O/attention.log" 2>&1
  fi
  echo "exit $?"
done
grep -E "^ +[0-9]+ |^=== |^decode plans|^[* ] t" "$O/attention.log"
echo "total $(( $(date +%s) - start ))s"
