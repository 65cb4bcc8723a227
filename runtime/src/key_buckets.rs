//! Every row's key hash and position, in buckets by the hash's top bits.
//!
//! The dedupe of nearly unique keys (`first_per_key`) pushes each batch's rows
//! here as it reads, then takes bucket after bucket: a bucket is small enough
//! for the CPU's cache (1,024 buckets: ~5,000 rows each at 5M rows), so sorting
//! it by hash costs integer compares in cache, where a sort of the whole input
//! on the key costs row-format compares and a k-way merge.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::Result;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_expr::PhysicalExpr;

/// The seed of the key hashes of the dedupe and the group sort: fixed, so a
/// run's buckets are the same from run to run.
pub(crate) fn hash_state() -> RandomState {
    RandomState::with_seed(0x6b69_6c6e)
}

/// `exprs` evaluated over `batch`, as arrays.
pub(crate) fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs.iter().map(|e| e.evaluate(batch)?.into_array(batch.num_rows())).collect()
}

/// A row's key hash and where it is (batch index, row in the batch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub hash: u64,
    pub batch: u32,
    pub row: u32,
}

/// Top bits of the hash that pick a bucket: 1,024 buckets, whose tails stay
/// in cache while rows are pushed.
const BUCKET_BITS: u32 = 10;

/// Every row's [`Slot`], bucketed by hash.
pub(crate) struct Slots {
    pub buckets: Vec<Vec<Slot>>,
    state: RandomState,
    /// The hashes of the batch pushed last.
    pub hashes: Vec<u64>,
}

impl Slots {
    pub fn new() -> Self {
        Slots { buckets: (0..1 << BUCKET_BITS).map(|_| Vec::new()).collect(), state: hash_state(), hashes: Vec::new() }
    }

    /// Adds the rows of batch `b`, given its key columns.
    pub fn push(&mut self, keys: &[ArrayRef], b: u32) -> Result<()> {
        let n = keys.first().map_or(0, |k| k.len());
        self.hashes.clear();
        self.hashes.resize(n, 0);
        create_hashes(keys, &self.state, &mut self.hashes)?;
        for (i, &hash) in self.hashes.iter().enumerate() {
            self.buckets[(hash >> (64 - BUCKET_BITS)) as usize].push(Slot { hash, batch: b, row: i as u32 });
        }
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.buckets.iter().map(|b| b.capacity()).sum::<usize>() * std::mem::size_of::<Slot>() + self.hashes.capacity() * 8
    }
}
