//! Routing by primary key: a hash that is the same in every process and every build.
//!
//! One worker owns each key, so that a key's changes are delivered in order by one writer, and
//! a restarted dataflow with the same number of workers routes every key to the same worker it
//! had before (which is what lets each worker resume from its own committed frontier). The
//! standard library's hasher makes no promise of stability across releases, so routing uses
//! 64-bit FNV-1a over the bytes the key's `Hash` implementation feeds it.

use std::hash::{Hash, Hasher};

/// The version of the routing hash ([`route_hash`]). It goes into every
/// [`routing_fingerprint`], so a change of the hash makes a restart over earlier progress
/// start a new generation or be refused instead of re-routing keys silently.
pub const ROUTING_HASH_VERSION: u32 = 1;

/// The [`Layout::routing`](crate::Layout) of a run whose keys are `key`: a description of what
/// the routed key is made of (say, its columns and encoding), hashed with the routing hash's
/// version. Never 0 (which means *not recorded*), and below 2⁶³, so that targets that keep only
/// signed 64-bit integers store it as it is.
pub fn routing_fingerprint(key: &str) -> u64 {
    let mut h = Fnv64::default();
    h.update(&ROUTING_HASH_VERSION.to_le_bytes());
    h.update(key.as_bytes());
    (h.finish() >> 1).max(1)
}

/// 64-bit FNV-1a: the one stable hash of the library (routing here; message ids, partition keys
/// and file names in the connectors), usable as an [`std::io::Write`] target to hash an encoding
/// as it is written. Stable across processes, platforms and compiler versions.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Adds `bytes`.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// The hash of everything added.
    #[inline]
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl std::io::Write for Fnv64 {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The routing hasher: [`Fnv64`] over the bytes a key's `Hash` feeds it, with a final avalanche.
#[derive(Clone, Copy, Debug, Default)]
pub struct StableHasher(Fnv64);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        // A final avalanche so that `% peers` sees well-mixed low bits.
        let mut h = self.0.finish();
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The routing hash of a key.
///
/// ```
/// use differential_sinks_operators::route_hash;
/// assert_eq!(route_hash(&"order-7"), route_hash(&"order-7".to_string()));
/// ```
pub fn route_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = StableHasher::default();
    key.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::route_hash;

    /// Golden values, computed independently (FNV-1a and the avalanche in a few lines of
    /// Python over the bytes each key's `Hash` feeds): a restart resumes per worker only if every
    /// key routes to the worker it had, in every build. A change here moves keys between workers.
    #[test]
    fn routing_is_pinned() {
        assert_eq!(route_hash(&7u64), 0xe805_ce64_407c_4fa7);
        assert_eq!(route_hash(&7u32), 0x97ee_6d73_9ad0_97c4);
        assert_eq!(route_hash("order-7"), 0x5284_f7ad_e593_a595);
        assert_eq!(route_hash(&(3u32, "a".to_string())), 0xcc33_974b_a1d6_10dd);
    }
}
