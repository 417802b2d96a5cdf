//! The concurrency strategies. Each one is a thin driver over the same
//! [`Session`](crate::session::Session); read their module docs in this
//! order: `threads`, `pool`, `fork`, `poll`, `async_tasks`.

pub mod async_tasks;
pub mod fork;
pub mod poll;
pub mod pool;
mod reactor;
pub mod threads;
mod tracker;
