//! Logging set-up shared by the subcommands: `tracing` to standard error,
//! human-readable or JSON. Writes are synchronous (no background thread),
//! which keeps `serve --model fork` free of threads; the server logs one
//! line per connection at `info`, so this is not a bottleneck.

use tracing_subscriber::EnvFilter;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `verbose`/`quiet` count `-v`/`-q`; `RUST_LOG` overrides both.
pub fn init(verbose: u8, quiet: u8, format: LogFormat) {
    let level = match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-2 => "off",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file or pipe gets text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
