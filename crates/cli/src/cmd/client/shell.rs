//! `hftp shell`: a small interactive session.

use super::*;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

/// Completes commands (first word) and remote names (the others).
struct ShellHelper {
    commands: Vec<String>,
    names: Vec<String>,
}

/// The shell's command names and aliases, from its clap definition.
fn command_names() -> Vec<String> {
    use clap::CommandFactory;
    Line::command()
        .get_subcommands()
        .flat_map(|c| std::iter::once(c.get_name()).chain(c.get_all_aliases()))
        .map(str::to_owned)
        .collect()
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        let word = &before[start..];
        let pool: Vec<&str> = if start == 0 {
            self.commands.iter().map(String::as_str).collect()
        } else {
            self.names.iter().map(String::as_str).collect()
        };
        let found = pool
            .into_iter()
            .filter(|c| c.starts_with(word))
            .map(|c| Pair {
                display: c.to_owned(),
                replacement: format!("{c} "),
            })
            .collect();
        Ok((start, found))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

struct Session {
    endpoint: Endpoint,
    client: Option<Client>,
    /// `--max-time`, for each command.
    max_time: Option<Duration>,
    /// The first failure's exit code.
    failure: u8,
}

impl Session {
    /// Starts a command: its own total time limit from now.
    fn start_command(&mut self) {
        let deadline = self.max_time.map(Deadline::after);
        self.endpoint.deadline = deadline;
        if let Some(c) = self.client.as_mut() {
            c.set_deadline(deadline);
        }
    }

    /// Records a command's exit code, if it is the first failure.
    fn failed(&mut self, code: u8) {
        if self.failure == exit::OK {
            self.failure = code;
        }
    }

    fn client(&mut self) -> Result<&mut Client, Error> {
        if self.client.as_ref().is_none_or(Client::is_broken) {
            self.client = None;
            self.client = Some(self.endpoint.connect()?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| Error::Internal("no connection after connecting".into()))
    }
}

pub(super) fn run(endpoint: Endpoint, max_time: Option<Duration>) -> Result<u8, Error> {
    let mut session = Session {
        client: None,
        endpoint,
        max_time,
        failure: exit::OK,
    };
    session.start_command();
    let names = match session.client()?.list() {
        Ok(mut names) => {
            names.sort_unstable();
            println!(
                "connected to {} ({} files; type help for commands)",
                session.endpoint,
                names.len()
            );
            for n in &names {
                println!("{n}");
            }
            names
        }
        // Too long to hold: the session still works, without completion.
        Err(e @ Error::ListingTooLong { .. }) => {
            note(&mut session.failure, &e);
            println!(
                "connected to {} (type help for commands; no name completion)",
                session.endpoint
            );
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let mut editor: Editor<ShellHelper, DefaultHistory> =
        Editor::new().map_err(|e| Error::Local {
            path: "terminal".into(),
            what: "use",
            source: io::Error::other(e),
        })?;
    editor.set_helper(Some(ShellHelper {
        commands: command_names(),
        names,
    }));
    loop {
        let line = match editor.readline("hftp> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("hftp: terminal: {e}");
                break;
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        session.start_command();
        ctrl_c::reset();
        match command(&mut session, &words) {
            Ok(Next::Names(names)) => {
                if let Some(h) = editor.helper_mut() {
                    h.names = names;
                }
            }
            Ok(Next::Go) => {}
            Ok(Next::Quit) => break,
            Err(e) => note(&mut session.failure, &e),
        }
    }
    if let Some(c) = session.client.take() {
        let _ = c.quit();
    }
    // Typed at a terminal, a failed command was seen and dealt with;
    // piped in (a script), the first failure is the outcome.
    Ok(if io::stdin().is_terminal() {
        exit::OK
    } else {
        session.failure
    })
}

/// One line typed at the prompt, parsed by clap as a command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "hftp>",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Line {
    #[command(subcommand)]
    command: ShellCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ShellCommand {
    /// List the files (-l: with sizes).
    #[command(override_usage = "ls [-l]")]
    Ls {
        /// With sizes.
        #[arg(short = 'l')]
        long: bool,
    },
    /// Print sizes.
    Stat {
        #[arg(value_name = "FILE", required = true)]
        files: Vec<String>,
    },
    /// Print a file, or bytes OFFSET..OFFSET+SIZE of it.
    Cat {
        #[arg(value_name = "FILE")]
        file: String,
        #[arg(value_name = "OFFSET:SIZE", value_parser = parse_range)]
        range: Option<(u64, Option<u64>)>,
    },
    /// Download into the current directory (-f: overwrite, -c: resume).
    #[command(override_usage = "get [-f] [-c] <FILE>...")]
    Get {
        /// Replace existing files.
        #[arg(short = 'f', long)]
        force: bool,
        /// Resume a part file even from another server.
        #[arg(short = 'c', long = "continue")]
        resume: bool,
        #[arg(value_name = "FILE", required = true)]
        files: Vec<String>,
    },
    /// This text, and the server's commands.
    Help,
    /// Leave (also exit, Ctrl-D).
    #[command(alias = "exit")]
    Quit,
}

/// What the prompt should do after a line.
pub(super) enum Next {
    Go,
    /// A fresh listing (for completion).
    Names(Vec<String>),
    Quit,
}

/// Parses and runs one line.
fn command(s: &mut Session, words: &[&str]) -> Result<Next, Error> {
    use clap::Parser;
    let line = Line::try_parse_from(words).map_err(|e| {
        // clap's message, first line only, without its "error: ".
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        Error::Usage(format!("{first} (type help)"))
    })?;
    let stdout = io::stdout();
    match line.command {
        ShellCommand::Ls { long } => {
            let (code, names) = ls_on(s.client()?, long, &mut stdout.lock())?;
            s.failed(code);
            Ok(Next::Names(names))
        }
        ShellCommand::Stat { files } => {
            let code = stat_on(s.client()?, &files, &mut stdout.lock())?;
            s.failed(code);
            Ok(Next::Go)
        }
        ShellCommand::Cat { file, range } => {
            let mut out = stdout.lock();
            cat_on(s.client()?, &file, range, &mut out)?;
            let _ = out.write_all(b"\n");
            Ok(Next::Go)
        }
        ShellCommand::Get {
            force,
            resume,
            files,
        } => {
            let opts = DownloadOptions {
                force,
                resume,
                ..DownloadOptions::default()
            };
            let bar = Bar::new(false, false, Duration::from_secs(5), None);
            for name in &files {
                hftp_client::check_name(name)?;
            }
            for name in files {
                s.client()?;
                let endpoint = s.endpoint.clone();
                get_one(
                    &mut s.client,
                    std::slice::from_ref(&endpoint),
                    &name,
                    Path::new(&name),
                    &opts,
                    &bar,
                )?;
                println!("saved {name}");
            }
            Ok(Next::Go)
        }
        ShellCommand::Help => {
            println!("{}", help_text());
            match s.client()?.help() {
                Ok(cmds) => println!("server commands: {}", cmds.join(" ")),
                Err(Error::Status { .. }) => println!("server: classic revision (no help)"),
                Err(e) => return Err(e),
            }
            Ok(Next::Go)
        }
        ShellCommand::Quit => Ok(Next::Quit),
    }
}

/// The commands with their usage, from the clap definition, for `help`
/// and `hftp shell --help`.
pub(super) fn help_text() -> String {
    use clap::CommandFactory;
    let line = Line::command();
    let rows: Vec<(String, String)> = line
        .get_subcommands()
        .map(|c| {
            let usage = c.clone().render_usage().to_string();
            let usage = usage.trim_start_matches("Usage: ").replace("hftp> ", "");
            (
                usage,
                c.get_about().map(|a| a.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let width = rows.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    let mut text = String::from("commands:\n");
    for (usage, about) in rows {
        text.push_str(&format!("  {usage:width$}  {about}\n"));
    }
    text.push_str("Tab completes commands and remote file names.");
    text
}
