//! Metric and span name constants shared by every Keel crate.
