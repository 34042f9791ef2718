//! An order-independent hash of a table's rows: the sum, modulo 2^256, of each row's SHA-256.
//!
//! A sum is a multiset hash: the order rows come back in (CLUSTER, VACUUM FULL, a restore) does
//! not change it, and a duplicated row does (XOR would cancel the pair). Rows are the lines of
//! `COPY … TO STDOUT` text output, whose escaping puts every row on one line.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What one table held: its exact row count and its content hash (64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableContent {
    pub rows: u64,
    pub hash: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("COPY output ended in the middle of a row ({0} bytes after the last newline)")]
pub struct UnterminatedRow(pub usize);

/// Accumulates rows fed as COPY text output in chunks of any size.
#[derive(Debug, Default)]
pub struct ContentHash {
    rows: u64,
    /// The running sum as a 256-bit number, least significant limb first.
    sum: [u64; 4],
    /// The start of a row whose newline has not arrived yet.
    pending: Vec<u8>,
}

impl ContentHash {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one row (without its newline).
    pub fn add_row(&mut self, row: &[u8]) {
        let digest = Sha256::digest(row);
        // The digest read as a big-endian 256-bit number, added with carry.
        let mut carry = false;
        for (limb, chunk) in self.sum.iter_mut().zip(digest.rchunks_exact(8)) {
            let value = u64::from_be_bytes(chunk.try_into().expect("8-byte chunk"));
            let (partial, overflow_a) = limb.overflowing_add(value);
            let (total, overflow_b) = partial.overflowing_add(u64::from(carry));
            *limb = total;
            carry = overflow_a || overflow_b;
        }
        self.rows += 1;
    }

    /// Feeds a chunk of COPY text output; every complete line is a row.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(end) = find_newline(chunk) {
            if self.pending.is_empty() {
                self.add_row(&chunk[..end]);
            } else {
                let mut row = std::mem::take(&mut self.pending);
                row.extend_from_slice(&chunk[..end]);
                self.add_row(&row);
            }
            chunk = &chunk[end + 1..];
        }
        self.pending.extend_from_slice(chunk);
    }

    pub fn finish(self) -> Result<TableContent, UnterminatedRow> {
        if !self.pending.is_empty() {
            return Err(UnterminatedRow(self.pending.len()));
        }
        let hash: String = self.sum.iter().rev().map(|limb| format!("{limb:016x}")).collect();
        Ok(TableContent { rows: self.rows, hash })
    }
}

/// The index of the first newline in `bytes`, eight bytes at a time: a byte-at-a-time scan of
/// pgbench-sized rows (~100 bytes) took a quarter of the CPU the hash spent on each row.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = ONES * b'\n' as u64;
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        // Zero bytes where `word` has a newline; the lowest flagged byte is the first zero (a
        // borrow can only flag bytes above it, which come later in little-endian order).
        let xored = u64::from_le_bytes(word.try_into().expect("8-byte chunk")) ^ NEWLINES;
        let zeros = xored.wrapping_sub(ONES) & !xored & HIGH_BITS;
        if zeros != 0 {
            return Some(offset + zeros.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    words.remainder().iter().position(|b| *b == b'\n').map(|at| offset + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(rows: &[&str]) -> TableContent {
        let mut hash = ContentHash::new();
        for row in rows {
            hash.feed(format!("{row}\n").as_bytes());
        }
        hash.finish().expect("every row ended")
    }

    #[test]
    fn row_order_does_not_matter() {
        assert_eq!(content(&["1\ta", "2\tb", "3\tc"]), content(&["3\tc", "1\ta", "2\tb"]));
    }

    #[test]
    fn a_duplicated_row_changes_the_hash_and_the_count() {
        let once = content(&["1\ta", "2\tb"]);
        let twice = content(&["1\ta", "2\tb", "2\tb"]);
        assert_ne!(once.hash, twice.hash);
        assert_eq!((once.rows, twice.rows), (2, 3));
        // Two copies of one row do not cancel out, as they would under XOR.
        assert_ne!(content(&["2\tb", "2\tb"]).hash, content(&[]).hash);
    }

    #[test]
    fn one_changed_value_changes_the_hash() {
        assert_ne!(content(&["1\ta", "2\tb"]).hash, content(&["1\ta", "2\tB"]).hash);
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let whole = content(&["1\tfirst row", "2\tsecond", "3\t"]);
        let text = b"1\tfirst row\n2\tsecond\n3\t\n";
        for split in 1..text.len() {
            let mut hash = ContentHash::new();
            hash.feed(&text[..split]);
            hash.feed(&text[split..]);
            assert_eq!(hash.finish().unwrap(), whole, "split at {split}");
        }
    }

    #[test]
    fn the_hash_is_the_sum_of_the_rows_sha256() {
        // Recorded baselines hold this value; computed independently (Python's hashlib).
        assert_eq!(
            content(&["1\ta", "2\tb", "3\t\\N"]).hash,
            "3e88409d160f27f09b47092f0f920b3a9daac4fceea628f106f77e143c3d81e2"
        );
    }

    #[test]
    fn find_newline_agrees_with_a_byte_scan() {
        // Every length across a few words, a newline at every place (or none), neighbours that
        // differ from a newline by one bit or a borrow (0x0b, 0x09, 0x8a, 0x00, 0xff).
        for len in 0..40 {
            for at in 0..=len {
                for neighbour in [b'a', 0x0b, 0x09, 0x8a, 0x00, 0xff] {
                    let mut bytes = vec![neighbour; len];
                    if at < len {
                        bytes[at] = b'\n';
                    }
                    let expected = bytes.iter().position(|b| *b == b'\n');
                    assert_eq!(find_newline(&bytes), expected, "{bytes:?}");
                }
            }
        }
        assert_eq!(find_newline(b"first\nsecond\n"), Some(5));
    }

    #[test]
    fn the_sum_carries_across_limbs() {
        let mut hash = ContentHash::new();
        hash.sum = [u64::MAX, u64::MAX, 0, 0];
        hash.add_row(b"x");
        let digest = Sha256::digest(b"x");
        let low = u64::from_be_bytes(digest[24..32].try_into().unwrap());
        assert_eq!(hash.sum[0], low.wrapping_sub(1));
        assert!(hash.sum[2] >= 1, "the carry reached the third limb");
    }

    #[test]
    fn an_empty_table_is_zero_rows_and_a_zero_hash() {
        assert_eq!(
            content(&[]),
            TableContent {
                rows: 0,
                hash: "0".repeat(64)
            }
        );
    }

    #[test]
    fn output_cut_inside_a_row_is_an_error() {
        let mut hash = ContentHash::new();
        hash.feed(b"1\ta\n2\tb");
        assert_eq!(hash.finish(), Err(UnterminatedRow(3)));
    }
}
