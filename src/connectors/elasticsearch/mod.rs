//! The `elasticsearch` connector (under construction).
