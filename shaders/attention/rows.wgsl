// Row loads shared by flash.wgsl and decode.wgsl, which declare q, k, v (as u32 words) and F16;
// the index appends this file to theirs.

// Element e of q (buf 0), k (1) or v (2): f32 bits, or f16 pairs with F16.
fn elem(buf: u32, e: u32) -> f32 {
    let w = select(e, e >> 1u, F16);
    var word: u32;
    if (buf == 0u) {
        word = q[w];
    } else if (buf == 1u) {
        word = k[w];
    } else {
        word = v[w];
    }
    if (F16) {
        return unpack2x16float(word)[e & 1u];
    }
    return bitcast<f32>(word);
}

// Elements c4·4 .. c4·4+4 of the row starting at element `row`, zero past the head dimension.
fn row4(buf: u32, row: u32, c4: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var x = 0u; x < 4u; x = x + 1u) {
        let c = c4 * 4u + x;
        if (c < p.d) {
            r[x] = elem(buf, row + c);
        }
    }
    return r;
}
