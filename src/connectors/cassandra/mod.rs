//! The `cassandra` connector (under construction).
