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
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
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
