//! Logical times a sink can commit, and the frontier type writers see.
//!
//! Sinks need a totally ordered time (the order in which a key's changes are delivered) that can
//! be recorded next to the data in the target system (a progress record, a snapshot summary, a
//! version column). [`SinkTime`] captures both: every timely timestamp with a total order that
//! maps losslessly to `u64`.
//!
//! [`Frontier`] is the lower bound of the times still to come: `Frontier::at(t)` says every time
//! before `t` is complete; `Frontier::complete()` says the input has ended and nothing will follow.

use serde::{Deserialize, Serialize};
use std::fmt;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

/// A totally ordered logical time with a lossless `u64` form.
///
/// Implemented for `u64`, `u32` and `usize`, the timestamps of outer dataflow scopes.
pub trait SinkTime: Timestamp + TotalOrder + timely::ExchangeData + std::hash::Hash + Copy + Send + Sync {
    /// The time as a `u64` (for progress records, versions and headers).
    fn to_u64(&self) -> u64;
    /// The time from its `u64` form; `None` if out of range for this type.
    fn from_u64(value: u64) -> Option<Self>;
}

macro_rules! impl_sink_time {
    ($($t:ty),*) => {$(
        impl SinkTime for $t {
            fn to_u64(&self) -> u64 { *self as u64 }
            fn from_u64(value: u64) -> Option<Self> { <$t>::try_from(value).ok() }
        }
    )*};
}
impl_sink_time!(u64, u32, usize);

/// The lower bound of the times still to come, for a totally ordered time.
///
/// ```
/// use differential_sinks_operators::Frontier;
/// let f = Frontier::at(5u64);
/// assert!(f.is_beyond(&4) && !f.is_beyond(&5));
/// assert!(Frontier::<u64>::complete().is_beyond(&u64::MAX));
/// assert!(Frontier::at(5u64) < Frontier::complete());
/// // Targets record frontiers over u64; a time type converts both ways where it fits.
/// assert_eq!(Frontier::at(5u32).to_u64_frontier(), Frontier::at(5u64));
/// assert_eq!(Frontier::<u32>::from_u64_frontier(Frontier::at(1 << 40)), None);
/// assert_eq!(Frontier::<u32>::from_u64_frontier(Frontier::complete()), Some(Frontier::complete()));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Frontier<T> {
    // `None` sorts before `Some`, so keep a flag that sorts the complete frontier last.
    complete: bool,
    time: Option<T>,
}

impl<T> Frontier<T> {
    /// Every time before `time` is complete.
    pub fn at(time: T) -> Self {
        Frontier { complete: false, time: Some(time) }
    }
    /// Every time is complete: the input has ended.
    pub fn complete() -> Self {
        Frontier { complete: true, time: None }
    }
    /// The least time still to come, or `None` when complete.
    pub fn time(&self) -> Option<&T> {
        self.time.as_ref()
    }
    /// True when the input has ended.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

impl<T: Ord> Frontier<T> {
    /// True when `time` is complete, i.e. strictly before this frontier.
    pub fn is_beyond(&self, time: &T) -> bool {
        match &self.time {
            Some(t) => time < t,
            None => true,
        }
    }
}

impl<T: Timestamp> Frontier<T> {
    /// The frontier before anything is complete.
    pub fn minimum() -> Self {
        Frontier::at(T::minimum())
    }
    /// Reads a total-order frontier from a timely antichain.
    pub fn from_antichain(antichain: timely::progress::frontier::AntichainRef<'_, T>) -> Self {
        match antichain.iter().next() {
            Some(t) => Frontier::at(t.clone()),
            None => Frontier::complete(),
        }
    }
}

impl<T: SinkTime> Frontier<T> {
    /// The frontier as `u64` (`None` when complete), for recording in a target system.
    pub fn to_u64(&self) -> Option<u64> {
        self.time.map(|t| t.to_u64())
    }
    /// The frontier from its recorded `u64` form (`None` means complete).
    pub fn from_u64(value: Option<u64>) -> Option<Self> {
        match value {
            Some(v) => T::from_u64(v).map(Frontier::at),
            None => Some(Frontier::complete()),
        }
    }
    /// The same frontier over `u64`, the form targets record.
    pub fn to_u64_frontier(&self) -> Frontier<u64> {
        Frontier { complete: self.complete, time: self.time.map(|t| t.to_u64()) }
    }
    /// A recorded `u64` frontier in this time type (`None` if it does not fit).
    pub fn from_u64_frontier(f: Frontier<u64>) -> Option<Self> {
        Self::from_u64(f.to_u64())
    }
}

impl<T: fmt::Debug> fmt::Debug for Frontier<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.time {
            Some(t) => write!(f, "[{t:?}]"),
            None => write!(f, "[]"),
        }
    }
}

impl<T: fmt::Debug> fmt::Display for Frontier<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
