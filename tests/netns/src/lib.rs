//! netns harness (being written).
