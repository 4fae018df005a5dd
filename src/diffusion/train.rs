//! Training of the behaviour prior (see `PriorConfig`).
