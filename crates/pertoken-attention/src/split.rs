//! Split-KV: how the flash kernel divides the keys of a call between workgroups.

use crate::{AttentionShape, FLASH_WG};

/// How the keys are divided between workgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Keys per split (a multiple of the kernel's key tile).
    pub chunk: u32,
    /// Number of splits.
    pub splits: u32,
}

/// Keys one flash workgroup walks at most, when the binding limit allows: bounds the work per
/// invocation (llvmpipe stops loops after 65535 iterations) and gives decode enough workgroups.
pub const KEYS_PER_SPLIT: usize = 256;

/// The split-KV plan for a shape: about [`KEYS_PER_SPLIT`] keys per split, at least enough
/// splits for 128 workgroups when the keys allow, at most 64, and partial results within
/// `max_binding` bytes.
pub fn plan(s: &AttentionShape, bkv: usize, max_binding: u64) -> Split {
    let tiles = s.kv_len.div_ceil(bkv);
    let q_tiles = s.q_len.div_ceil(FLASH_WG as usize);
    let for_occupancy = 128usize.div_ceil(q_tiles * s.n_heads);
    let for_length = s.kv_len.div_ceil(KEYS_PER_SPLIT);
    let per_split_bytes = (s.n_heads * s.q_len * s.head_dim * 4) as u64;
    let fit = (max_binding / per_split_bytes.max(1)).max(1) as usize;
    let splits = for_occupancy
        .max(for_length)
        .min(64)
        .min(tiles)
        .min(fit)
        .max(1);
    let chunk = tiles.div_ceil(splits) * bkv;
    Split {
        chunk: u32::try_from(chunk).unwrap_or(u32::MAX),
        splits: u32::try_from(s.kv_len.div_ceil(chunk)).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::shape::test_shape as shape;

    #[test]
    fn decode_splits_for_occupancy_and_prefill_for_length() {
        // Decode, 32 heads, 4096 keys: 16 splits of 256 keys (length), 32·16 = 512 workgroups.
        let p = plan(&shape(32, 1, 4096), 16, 1 << 30);
        assert_eq!((p.chunk, p.splits), (256, 16));
        // One head, 1000 keys: occupancy asks for 128 splits, capped at 64 and at 63 tiles.
        let p = plan(&shape(1, 1, 1000), 16, 1 << 30);
        assert_eq!(p.splits, 63);
        assert!(p.chunk as usize * p.splits as usize >= 1000);
        // Every split covers at least one key, and together they cover all.
        for kv in [1usize, 15, 16, 17, 255, 256, 257, 5000] {
            let p = plan(&shape(8, 100, kv), 16, 1 << 30);
            assert!(p.chunk.is_multiple_of(16) && p.splits >= 1);
            assert!(
                (p.splits as usize - 1) * (p.chunk as usize) < kv,
                "{kv}: {p:?}"
            );
            assert!(p.splits as usize * p.chunk as usize >= kv, "{kv}: {p:?}");
        }
        // Partial results must fit the binding limit: 1 split when even two would not.
        let p = plan(&shape(32, 2048, 2048), 16, 40 << 20);
        assert_eq!(p.splits, 1);
    }
}
