//! One module per subcommand (or family of subcommands).

pub mod bench;
pub mod check;
pub mod client;
pub mod docs;
pub mod grade;
pub mod serve;
