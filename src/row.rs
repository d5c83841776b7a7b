//! What a row type needs to be sunk.

use serde::Serialize;
use timely::ExchangeData;

/// What a row type needs to be sunk: serializable (for encoding and key extraction), exchangeable
/// between workers, and ordered (for consolidation).
pub trait Row: Serialize + ExchangeData + Ord + Clone + 'static {}
impl<V: Serialize + ExchangeData + Ord + Clone + 'static> Row for V {}
