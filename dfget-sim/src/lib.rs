//! A dfget 1.0.6-compatible peer (see README).
