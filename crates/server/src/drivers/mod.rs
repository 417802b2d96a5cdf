//! The concurrency strategies. Each one is a thin driver over the same
//! [`Connection`](crate::connection::Connection), which it only feeds bytes
//! and time; read their module docs in this order: `threads`, `pool`,
//! `fork`, `poll`, `async_tasks`, `uring`.

pub mod async_tasks;
pub mod fork;
pub mod poll;
pub mod pool;
mod reactor;
pub mod threads;
mod tracker;
pub mod uring;
