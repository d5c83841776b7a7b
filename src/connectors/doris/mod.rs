//! The `doris` connector (under construction).
