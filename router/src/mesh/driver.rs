//! tokio shell around the sans-IO mesh core (being written).
