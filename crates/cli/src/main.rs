//! `hftp`: the HFTP server, client, conformance checker and load generator.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only
//! dispatches. No async runtime is started here: `serve --model fork` must
//! fork from a process that has a single thread.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod logging;

#[derive(Parser)]
#[command(
    name = "hftp",
    version = env!("HFTP_VERSION"),
    about = "HFTP server, client, conformance checker and load generator",
    long_about = "HFTP is the small line-oriented file transfer protocol of a university \
networking course. This one binary serves a directory over it (`serve`), reads from any \
HFTP server (`ls`, `stat`, `cat`, `get`, `shell`), checks a server against the protocol \
(`check`) and measures one (`bench`).",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a directory over HFTP.
    Serve(cmd::serve::Args),
    /// Run the conformance suite against any HFTP server.
    Check(cmd::check::Args),
    /// Grade a whole class: every submission checked in its own sandbox.
    Grade(cmd::grade::Args),
    /// List the files of a server.
    Ls(cmd::client::LsArgs),
    /// Print the size of remote files.
    Stat(cmd::client::StatArgs),
    /// Write a remote file (or a byte range of it) to standard output.
    Cat(cmd::client::CatArgs),
    /// Download remote files, in parallel segments, resumable.
    Get(cmd::client::GetArgs),
    /// Interactive session with history and completion of remote names.
    Shell(cmd::client::ShellArgs),
    /// Load generator: measure any HFTP server.
    Bench(cmd::bench::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::docs::CompletionsArgs),
    /// Print the manual page (roff), or write one page per subcommand with --dir.
    Man(cmd::docs::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Grade(args) => cmd::grade::run(args),
        Command::Ls(args) => cmd::client::ls(args),
        Command::Stat(args) => cmd::client::stat(args),
        Command::Cat(args) => cmd::client::cat(args),
        Command::Get(args) => cmd::client::get(args),
        Command::Shell(args) => cmd::client::shell(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Completions(args) => cmd::docs::completions(args),
        Command::Man(args) => cmd::docs::man(args),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`hftp check --list | head`) ends the
        // output, quietly, as it does for `ls`.
        Err(err) if is_closed_output(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hftp: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `err` comes from writing to a pipe whose reader has gone.
fn is_closed_output(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
