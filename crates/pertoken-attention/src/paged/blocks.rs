//! Which blocks of a pool are free: the host side of a paged KV cache. No GPU work.

use pertoken_gpu::{Error, Result};

/// The free blocks of a pool of `total`, handed out and taken back as sequences come and go.
/// The most recently freed block is handed out first (its memory is the likeliest in a cache).
#[derive(Debug, Clone)]
pub struct BlockAllocator {
    total: u32,
    free: Vec<u32>,
    /// Whether each block is handed out, to refuse freeing one twice.
    used: Vec<bool>,
}

impl BlockAllocator {
    /// A pool of `total` blocks, all free.
    pub fn new(total: usize) -> Result<BlockAllocator> {
        let Ok(total) = u32::try_from(total) else {
            return Err(Error::InvalidOption {
                name: "KV blocks",
                value: total.to_string(),
                reason: "at most 2³²−1 blocks".into(),
            });
        };
        Ok(BlockAllocator {
            total,
            free: (0..total).rev().collect(),
            used: vec![false; total as usize],
        })
    }

    /// Blocks in the pool.
    pub fn total(&self) -> usize {
        self.total as usize
    }

    /// Blocks free now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Blocks handed out now.
    pub fn in_use(&self) -> usize {
        self.total() - self.available()
    }

    /// `n` blocks, or `None` (and nothing taken) if fewer are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        let got = self.free.split_off(self.free.len() - n);
        for &b in &got {
            self.used[b as usize] = true;
        }
        Some(got)
    }

    /// Takes `blocks` back. A block that is not handed out (freed twice, or past the pool) is an
    /// error, and then nothing is taken back.
    pub fn release(&mut self, blocks: &[u32]) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for &b in blocks {
            if b >= self.total || !self.used[b as usize] || !seen.insert(b) {
                return Err(Error::InvalidOption {
                    name: "KV block",
                    value: b.to_string(),
                    reason: format!(
                        "freed but not handed out (a pool of {} blocks): a sequence's block \
                         table is corrupt",
                        self.total
                    ),
                });
            }
        }
        for &b in blocks.iter().rev() {
            self.used[b as usize] = false;
            self.free.push(b);
        }
        Ok(())
    }
}

/// Blocks of `block` positions that hold `positions`.
pub fn blocks_for(positions: usize, block: usize) -> usize {
    positions.div_ceil(block.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_once_and_reused_after_release() {
        let mut a = BlockAllocator::new(5).unwrap();
        let x = a.allocate(3).unwrap();
        assert_eq!(a.available(), 2);
        assert!(a.allocate(3).is_none(), "only 2 are free");
        assert_eq!(a.available(), 2, "a refused allocation takes nothing");
        let y = a.allocate(2).unwrap();
        let mut all: Vec<u32> = x.iter().chain(&y).copied().collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
        a.release(&x).unwrap();
        assert_eq!(a.in_use(), 2);
        let z = a.allocate(3).unwrap();
        let (mut z2, mut x2) = (z.clone(), x.clone());
        z2.sort();
        x2.sort();
        assert_eq!(z2, x2, "the freed blocks come back");
    }

    #[test]
    fn freeing_twice_or_past_the_pool_is_an_error() {
        let mut a = BlockAllocator::new(4).unwrap();
        let x = a.allocate(2).unwrap();
        a.release(&x[..1]).unwrap();
        assert!(a.release(&x[..1]).is_err());
        assert!(a.release(&[9]).is_err());
        assert!(a.release(&[x[1], x[1]]).is_err());
        assert_eq!(a.available(), 3, "a refused release takes nothing back");
        assert_eq!(blocks_for(33, 16), 3);
        assert_eq!(blocks_for(32, 16), 2);
    }
}
