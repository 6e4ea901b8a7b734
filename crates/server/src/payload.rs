//! The download payload: one buffer of random bytes, generated once at start
//! and served in rotation, so no request pays for randomness and nothing on
//! the path can compress it.

use bytes::Bytes;
use ispeed_proto::consts::{DOWNLOAD_CHUNK_BYTES, PAYLOAD_POOL_BYTES};

/// A pool of incompressible bytes handed out as zero-copy chunks.
#[derive(Clone)]
pub struct PayloadPool {
    pool: Bytes,
}

impl PayloadPool {
    /// Fills the pool from the operating system's random source.
    pub fn generate() -> Result<PayloadPool, getrandom::Error> {
        // One extra chunk so every rotation offset yields a full-size slice.
        let mut pool = vec![0u8; PAYLOAD_POOL_BYTES + DOWNLOAD_CHUNK_BYTES];
        getrandom::fill(&mut pool)?;
        Ok(PayloadPool {
            pool: Bytes::from(pool),
        })
    }

    /// The `index`-th chunk, at most `limit` bytes. Offsets step by an odd
    /// number of KiB so consecutive chunks never repeat at the same alignment.
    pub fn chunk(&self, index: u64, limit: usize) -> Bytes {
        const STEP: u64 = 257 * 1024;
        let offset = (index.wrapping_mul(STEP) % PAYLOAD_POOL_BYTES as u64) as usize;
        let len = DOWNLOAD_CHUNK_BYTES.min(limit);
        self.pool.slice(offset..offset + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_random_not_zero() {
        let pool = PayloadPool::generate().unwrap();
        let chunk = pool.chunk(3, usize::MAX);
        assert_eq!(chunk.len(), DOWNLOAD_CHUNK_BYTES);
        let zeros = chunk.iter().filter(|&&b| b == 0).count();
        // Uniform bytes: about 1/256 zeros.
        assert!(zeros < chunk.len() / 100, "{zeros} zero bytes");
        assert_ne!(pool.chunk(0, 16), pool.chunk(1, 16));
        assert_eq!(pool.chunk(5, 10).len(), 10);
    }
}
