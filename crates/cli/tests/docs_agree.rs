//! (being written)
//!
//! Tier: quick.
