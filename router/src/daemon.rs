//! daemon wiring (being written).
