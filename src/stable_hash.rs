//! Stable hashes for identities that outlive a process: key routing inside the library, message
//! ids, partition keys and file names that a restarted sink must compute again to the same value.
//!
//! The standard library's hashers make no promise across releases, so these are 64-bit FNV-1a
//! (and a 128-bit digest of two FNV variants where a collision between ids must be unlikely even
//! over billions of records). None of them is meant to resist an adversary.

/// 64-bit FNV-1a, the same hash the operator routes keys by (defined once, in the operators
/// crate), usable as an [`std::io::Write`] target to hash an encoding as it is written.
///
/// ```
/// use differential_sinks::stable_hash::{fnv64, Fnv64};
/// use std::io::Write;
/// let mut h = Fnv64::default();
/// h.write_all(b"ab").unwrap();
/// assert_eq!(h.finish(), fnv64(b"ab"));
/// ```
pub use differential_sinks_operators::Fnv64;

/// The 64-bit FNV-1a hash of `bytes`.
#[inline]
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::default();
    h.update(bytes);
    h.finish()
}

/// A 128-bit digest of `bytes`: FNV-1a twice, with different offsets and a rotation in the
/// second, for ids that must not collide by chance.
pub fn digest128(bytes: &[u8]) -> u128 {
    let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h2: u64 = 0x6c62_272e_07bb_0142;
    for &b in bytes {
        h1 = (h1 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        h2 = (h2 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
    }
    (u128::from(h1) << 64) | u128::from(h2)
}

/// The identity of a sink writing to one target object (`target` names the table, index,
/// stream or directory): a 32-digit lowercase hex digest of both, one token in any text
/// analyzer, a file name or a subject. Two sinks of one name into two targets get different
/// identities; the parts are length-prefixed, so no two (sink, target) pairs share one.
///
/// ```
/// use differential_sinks::stable_hash::scope_id;
/// assert_ne!(scope_id("orders", "db.a"), scope_id("orders", "db.b"));
/// assert_ne!(scope_id("a", "bc"), scope_id("ab", "c"));
/// assert_eq!(scope_id("orders", "db.a").len(), 32);
/// ```
pub fn scope_id(sink: &str, target: &str) -> String {
    let mut buf = Vec::with_capacity(sink.len() + target.len() + 16);
    buf.extend_from_slice(&(sink.len() as u64).to_le_bytes());
    buf.extend_from_slice(sink.as_bytes());
    buf.extend_from_slice(target.as_bytes());
    format!("{:032x}", digest128(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: these identities are stored by targets and must never change.
    #[test]
    fn golden_values() {
        assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
        // Computed independently (a few lines of Python over the same definition).
        assert_eq!(scope_id("sink", "db.t"), "23506ab71dc771666f331f0f5b960b07");
    }
}
