//! Logging set-up shared by the subcommands.
