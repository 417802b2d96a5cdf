//! The client subcommands: `ls`, `stat`, `cat`, `get`, `shell`. A thin
//! layer over `hftp_client`: parse the options, call the library, print one
//! line per error and exit with the documented code (`docs/client.md`).

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hftp_client::{exit, Client, Deadline, DownloadOptions, Endpoint, Error, Proxy};

mod progress;

use progress::{Bar, RateLimit, Throttled};

/// The exit code table for `--help`, from `hftp_client::exit::TABLE`.
fn exit_codes() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in exit::TABLE {
        text.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    text.push_str("With several files, the code is that of the first failure.");
    text
}

/// How to reach the server; shared by every client subcommand.
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// Server: HOST, HOST:PORT or [IPv6]:PORT (default port 19500), or a
    /// URL hftp://HOST[:PORT]/NAME, which also names a file (hftps://: the
    /// same over TLS, default port 19500 too). `get` also takes mirrors of
    /// the same files: HOST1,HOST2,...
    #[arg(value_name = "HOST")]
    pub target: String,
    /// Connect through a SOCKS5 proxy: socks5h://HOST:PORT (the proxy
    /// resolves names, as .onion needs) or socks5://HOST:PORT.
    #[arg(long, value_name = "URL", env = "HFTP_PROXY")]
    pub proxy: Option<String>,
    /// Connect timeout, and the longest any read or write may wait, in
    /// seconds (0: none).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Give up after SECS seconds in total, however steadily bytes arrive
    /// (0: no limit). Default: 300 for ls and stat, none for cat, get and
    /// shell (in the shell, the limit applies to each command).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub max_time: Option<Duration>,
    /// Always ask for base64 slices, even from servers that have `raw`.
    #[arg(long)]
    pub no_raw: bool,
    /// Language of error messages: en or es (default: from LC_ALL,
    /// LC_MESSAGES or LANG).
    #[arg(long, value_name = "LANG", value_parser = super::check::parse_lang)]
    pub lang: Option<hftp_check::Lang>,
    #[command(flatten)]
    pub tls: super::TlsArgs,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a number of seconds"))
}

mod ctrl_c;

/// The `--max-time` of `ls` and `stat` when none is given: their replies
/// are small, so five minutes means a stuck or hostile server.
const SHORT_COMMAND_MAX_TIME: Duration = Duration::from_secs(300);

impl Conn {
    /// The total time limit: `--max-time`, else `default`; zero means none.
    fn max_time(&self, default: Option<Duration>) -> Option<Duration> {
        self.max_time.or(default).filter(|t| !t.is_zero())
    }

    /// The endpoint, with its deadline starting now.
    fn endpoint_within(&self, default_max_time: Option<Duration>) -> Result<Endpoint, Error> {
        Ok(self
            .endpoint()?
            .with_deadline(self.max_time(default_max_time).map(Deadline::after)))
    }

    /// The servers of the target, each with the file name of its URL:
    /// several, comma-separated, are mirrors (for `get`).
    fn targets(&self) -> Result<Vec<(Endpoint, Option<String>)>, Error> {
        self.target
            .split(',')
            .map(|one| {
                if one.is_empty() {
                    return Err(Error::Usage(format!(
                        "target {:?}: an empty server in the list (HOST1,HOST2,...)",
                        self.target
                    )));
                }
                Endpoint::parse_url(one)
            })
            .collect()
    }

    /// The file name the target's URLs give, if any; mirrors' URLs must
    /// agree on it.
    fn url_name(&self) -> Result<Option<String>, Error> {
        let mut found: Option<String> = None;
        for (_, name) in self.targets()? {
            match (&found, name) {
                (Some(a), Some(b)) if *a != b => {
                    return Err(Error::Usage(format!(
                        "target {:?}: the URLs name different files ({a}, {b})",
                        self.target
                    )))
                }
                (None, Some(b)) => found = Some(b),
                _ => {}
            }
        }
        Ok(found)
    }

    /// The files to work on: the URL's name, if any, then `files`.
    fn files(&self, files: &[String]) -> Result<Vec<String>, Error> {
        let name = self.url_name()?;
        let all: Vec<String> = name.into_iter().chain(files.iter().cloned()).collect();
        if all.is_empty() {
            return Err(Error::Usage(
                "no FILE given (after HOST, or as hftp://HOST/NAME)".into(),
            ));
        }
        Ok(all)
    }

    fn endpoint(&self) -> Result<Endpoint, Error> {
        match &self.mirrors()?[..] {
            [one] => Ok(one.clone()),
            _ => Err(Error::Usage(format!(
                "target {:?}: several servers (mirrors) are for get only",
                self.target
            ))),
        }
    }

    /// Every server of the target, with this command's options.
    fn mirrors(&self) -> Result<Vec<Endpoint>, Error> {
        let proxy = match self.proxy.as_deref() {
            None | Some("") => None,
            Some(url) => Some(Proxy::parse(url)?),
        };
        let interrupt = ctrl_c::install();
        let targets = self.targets()?;
        // Mirrors may mix hftps:// and hftp://: TLS options are for the
        // former (and an error only when no server uses TLS).
        let some_tls = targets.iter().any(|(e, _)| e.tls.is_some());
        let mut tls = None;
        targets
            .into_iter()
            .map(|(endpoint, _)| {
                let endpoint = endpoint
                    .with_interrupt(interrupt)
                    .with_proxy(proxy.clone())
                    .with_timeout(self.timeout)
                    .with_raw(!self.no_raw);
                if some_tls && endpoint.tls.is_none() && !self.tls.tls {
                    return Ok(endpoint);
                }
                self.tls.apply(endpoint, &mut tls)
            })
            .collect()
    }
}

#[derive(clap::Args)]
#[command(after_help = exit_codes())]
pub struct LsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Show the size of each file too.
    #[arg(short = 'l')]
    long: bool,
    /// Print names as they arrive, in the server's order, with no limit on
    /// their number (without it, names are sorted, so they are held: at
    /// most a million names or 32 MiB, else exit code 4).
    #[arg(short = 'U', conflicts_with = "long")]
    unsorted: bool,
}

#[derive(clap::Args)]
#[command(after_help = exit_codes())]
pub struct StatArgs {
    #[command(flatten)]
    conn: Conn,
    /// Remote file names.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
}

#[derive(clap::Args)]
#[command(after_help = exit_codes())]
pub struct CatArgs {
    #[command(flatten)]
    conn: Conn,
    /// Remote file name (or give it in an hftp:// URL).
    #[arg(value_name = "FILE")]
    file: Option<String>,
    /// Only the bytes OFFSET..OFFSET+SIZE; `OFFSET:` means to the end.
    #[arg(long, value_name = "OFFSET:SIZE", value_parser = parse_range)]
    range: Option<(u64, Option<u64>)>,
    /// At most RATE bytes per second: 200K, 1.5M, 1G (powers of 1024).
    #[arg(long, value_name = "RATE", value_parser = progress::parse_rate)]
    limit_rate: Option<u64>,
}

#[derive(clap::Args)]
#[command(after_help = exit_codes(), after_long_help = format!("{}{}", "\
Examples:
  hftp get localhost big.iso                     into ./big.iso, 4 connections
  hftp get hftp://files.example/big.iso -O dl    into dl/big.iso
  hftp get a.example,b.example:2000 big.iso      from two mirrors at once
  hftp get localhost big.iso --retries 0         fail at the first error

Each file is written to a hidden part file .NAME.hftp-part in the target
directory (large ones in parallel segments over several connections, each
segment written in place), then renamed to NAME once complete and checked
against the server's size. An interrupted download leaves the part file and
a small state file .NAME.hftp-state listing the finished segments and where
they came from; running the same command again fetches only the rest. A
part file of another server, name or size is never discarded silently:
--continue resumes it anyway (same name and size), --force starts over. An
existing NAME is never replaced without --force.

A segment that fails for a passing reason (connection refused, reset or
closed, a timeout, 199 INTERNAL SERVER ERROR) is fetched again from the byte
where it stopped, on a new connection, after 0.2 s, 0.4 s, 0.8 s ... at most
5 s (with jitter), up to --retries times per segment; each retry is one line
on standard error. A new connection first checks the file's size: a file
that changed size or was removed (202) ends the download, and the part file,
of a version the server no longer has, is removed. Other errors (usage,
protocol, local disk, --max-time, Ctrl-C) are not retried.

Mirrors: HOST1,HOST2,... names several servers of the same file (each may
have :PORT, [IPv6]:PORT, or be an hftp:// URL). Their sizes are checked
first: a mirror that differs is an error naming it, an unreachable one is
dropped with a warning. Connections are spread over them round-robin, and a
failed segment moves to the mirror with the fewest failures.

", exit_codes()))]
pub struct GetArgs {
    #[command(flatten)]
    conn: Conn,
    /// Remote file names, or patterns with `*` and `?` matched against the
    /// listing (quote them from your shell).
    #[arg(value_name = "FILE")]
    files: Vec<String>,
    /// Download every file the server lists.
    #[arg(long)]
    all: bool,
    /// Write to PATH (one FILE only).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH",
        conflicts_with = "dir"
    )]
    output: Option<PathBuf>,
    /// Write into DIR (created if missing), under the remote names
    /// (default: the current directory).
    #[arg(short = 'O', long = "dir", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Connections per large file (files under 8 MiB use one).
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Replace existing files (and start over from a part file of another download).
    #[arg(short = 'f', long)]
    force: bool,
    /// Resume a part file even from another server (same name and size);
    /// the same server is resumed without it.
    #[arg(short = 'c', long = "continue")]
    resume: bool,
    /// No progress or summary.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Sizes in exact bytes instead of KiB, MiB, GiB.
    #[arg(long)]
    bytes: bool,
    /// At most RATE bytes per second in all (every connection together):
    /// 200K, 1.5M, 1G (powers of 1024).
    #[arg(long, value_name = "RATE", value_parser = progress::parse_rate)]
    limit_rate: Option<u64>,
    /// When standard error is not a terminal, a progress line every SECS
    /// seconds (on a terminal, a bar).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_timeout)]
    progress_interval: Duration,
    /// Fetch a failed segment again up to N times (per segment; 0: never),
    /// from where it stopped, after a growing pause.
    #[arg(long, value_name = "N", default_value_t = 5)]
    retries: u32,
}

#[derive(clap::Args)]
#[command(after_help = format!("{}\n\n{}", shell::help_text(), exit_codes()))]
pub struct ShellArgs {
    #[command(flatten)]
    conn: Conn,
}

fn parse_range(s: &str) -> Result<(u64, Option<u64>), String> {
    let bad = || format!("{s:?}: expected OFFSET:SIZE or OFFSET: (decimal numbers)");
    let (off, size) = s.split_once(':').ok_or_else(bad)?;
    let num = |t: &str| {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u64>().map_err(|_| bad())
    };
    let off = num(off)?;
    let size = if size.is_empty() {
        None
    } else {
        Some(num(size)?)
    };
    Ok((off, size))
}

fn fail(err: &Error) -> ExitCode {
    eprintln!("hftp: {}", message(err));
    ExitCode::from(err.exit_code())
}

/// `err` in the language in force (the checker's setting is the process's).
pub(super) fn message(err: &Error) -> String {
    match hftp_check::i18n::current() {
        hftp_check::Lang::Es => err.in_spanish(),
        hftp_check::Lang::En => err.to_string(),
    }
}

/// Runs `f` and turns an error into its line (in `conn`'s language) and
/// exit code.
fn run(conn: &Conn, f: impl FnOnce() -> Result<u8, Error>) -> anyhow::Result<ExitCode> {
    hftp_check::i18n::set(conn.lang.unwrap_or_else(hftp_check::Lang::from_env));
    conn.tls.warn();
    Ok(match f() {
        Ok(code) => ExitCode::from(code),
        Err(err) => fail(&err),
    })
}

/// Records the first failure's code.
fn note(code: &mut u8, err: &Error) {
    eprintln!("hftp: {}", message(err));
    if *code == exit::OK {
        *code = err.exit_code();
    }
}

fn sizes_table(rows: &[(u64, &str)]) -> String {
    let width = rows
        .iter()
        .map(|(s, _)| s.to_string().len())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(size, name)| format!("{size:>width$}  {name}\n"))
        .collect()
}

pub fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    run(&args.conn, || {
        args.conn.endpoint()?;
        Endpoint::parse(&args.conn.target)?;
        let mut client = args
            .conn
            .endpoint_within(Some(SHORT_COMMAND_MAX_TIME))?
            .connect()?;
        let code = if args.unsorted {
            ls_streamed(&mut client, &mut io::stdout().lock())?;
            exit::OK
        } else {
            ls_on(&mut client, args.long, &mut io::stdout().lock())?.0
        };
        let _ = client.quit();
        Ok(code)
    })
}

/// `ls -U`: each name is written as it arrives, so memory stays bounded
/// whatever the server sends. A reader that went away ends it quietly.
fn ls_streamed(client: &mut Client, out: &mut dyn Write) -> Result<(), Error> {
    let mut out = io::BufWriter::new(out);
    let listed = client.list_each(|name| {
        out.write_all(name.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(Error::Output)
    });
    let flushed = listed.and_then(|_| out.flush().map_err(Error::Output));
    match flushed {
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `ls` and `ls -l`: sorted, so held (within the client's listing limit).
/// Returns the exit code and the names (for the shell's completion).
fn ls_on(client: &mut Client, long: bool, out: &mut dyn Write) -> Result<(u8, Vec<String>), Error> {
    let mut names = client.list()?;
    names.sort_unstable();
    let mut code = exit::OK;
    let text = if long {
        let sizes = client.metadata_many(&names)?;
        let mut rows = Vec::new();
        for (name, size) in names.iter().zip(sizes) {
            match size {
                Ok(size) => rows.push((size, name.as_str())),
                Err(e) => note(&mut code, &e),
            }
        }
        sizes_table(&rows)
    } else {
        names.iter().map(|n| format!("{n}\n")).collect()
    };
    write_out(out, text.as_bytes())?;
    Ok((code, names))
}

fn write_out(out: &mut dyn Write, bytes: &[u8]) -> Result<(), Error> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::Output(e)),
        _ => Ok(()),
    }
}

pub fn stat(args: StatArgs) -> anyhow::Result<ExitCode> {
    run(&args.conn, || {
        let files = args.conn.files(&args.files)?;
        let mut client = args
            .conn
            .endpoint_within(Some(SHORT_COMMAND_MAX_TIME))?
            .connect()?;
        let code = stat_on(&mut client, &files, &mut io::stdout().lock())?;
        let _ = client.quit();
        Ok(code)
    })
}

fn stat_on(client: &mut Client, files: &[String], out: &mut dyn Write) -> Result<u8, Error> {
    let sizes = client.metadata_many(files)?;
    let mut code = exit::OK;
    let mut rows = Vec::new();
    for (name, size) in files.iter().zip(sizes) {
        match size {
            Ok(size) => rows.push((size, name.as_str())),
            Err(e) => note(&mut code, &e),
        }
    }
    write_out(out, sizes_table(&rows).as_bytes())?;
    Ok(code)
}

pub fn cat(args: CatArgs) -> anyhow::Result<ExitCode> {
    run(&args.conn, || {
        let files = args.conn.files(args.file.as_slice())?;
        let [file] = &files[..] else {
            return Err(Error::Usage(format!(
                "cat takes one FILE, given {}: {}",
                files.len(),
                files.join(" ")
            )));
        };
        let mut client = args.conn.endpoint_within(None)?.connect()?;
        let stdout = io::stdout();
        let limit = args.limit_rate.map(RateLimit::new);
        let mut out = Throttled {
            inner: io::BufWriter::with_capacity(256 * 1024, stdout.lock()),
            limit: limit.as_ref(),
        };
        cat_on(&mut client, file, args.range, &mut out)?;
        let _ = client.quit();
        Ok(exit::OK)
    })
}

/// Streams a file or range to `out`. A reader that went away (`| head`)
/// is not an error.
fn cat_on(
    client: &mut Client,
    file: &str,
    range: Option<(u64, Option<u64>)>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (offset, size) = match range {
        Some((offset, Some(size))) => (offset, size),
        Some((offset, None)) => {
            let total = client.metadata(file)?;
            (
                offset,
                total.checked_sub(offset).ok_or_else(|| Error::Status {
                    request: format!("cat {file} --range {offset}:"),
                    status: hftp_proto::Status::OffsetExceedsFileSize,
                })?,
            )
        }
        None => (0, client.metadata(file)?),
    };
    match client
        .slice_to(file, offset, size, out)
        .and_then(|_| out.flush().map_err(Error::Output))
    {
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

pub fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    run(&args.conn, || {
        let deadline = args.conn.max_time(None).map(Deadline::after);
        let mirrors: Vec<Endpoint> = args
            .conn
            .mirrors()?
            .into_iter()
            .map(|m| m.with_deadline(deadline))
            .collect();
        let mut client: Option<Client> = None;
        let files = if args.all {
            if args.conn.url_name()?.is_some() || !args.files.is_empty() {
                return Err(Error::Usage("--all takes no FILE".into()));
            }
            None
        } else {
            Some(args.conn.files(&args.files)?)
        };
        let mut code = exit::OK;
        let (files, unmatched) = expand(&mut client, &mirrors, files)?;
        for e in &unmatched {
            note(&mut code, e);
        }
        if args.output.is_some() && (files.len() > 1 || args.all) {
            return Err(Error::Usage(
                "-o PATH takes exactly one FILE (use -O DIR for several)".into(),
            ));
        }
        let opts = DownloadOptions {
            jobs: usize::from(args.jobs),
            force: args.force,
            resume: args.resume,
            retries: args.retries,
            ..DownloadOptions::default()
        };
        if let Some(dir) = &args.dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Local {
                path: dir.clone(),
                what: "create the directory",
                source,
            })?;
        }
        let bar = Bar::new(
            args.quiet,
            args.bytes,
            args.progress_interval,
            args.limit_rate,
        );
        for name in &files {
            let dest = match (&args.output, &args.dir) {
                (Some(path), _) => path.clone(),
                (None, Some(dir)) => dir.join(name),
                (None, None) => PathBuf::from(name),
            };
            match get_one(&mut client, &mirrors, name, &dest, &opts, &bar) {
                Ok(()) => {}
                Err(e) => {
                    note(&mut code, &e);
                    if matches!(
                        e.cause(),
                        Error::Connect { .. }
                            | Error::Proxy(_)
                            | Error::Tls { .. }
                            | Error::SpeaksTls { .. }
                            | Error::Interrupted { .. }
                    ) {
                        break;
                    }
                }
            }
        }
        if let Some(c) = client {
            let _ = c.quit();
        }
        Ok(code)
    })
}

/// The names to download: `None` means all the listing; patterns with
/// `*` or `?` match against the listing (fetched once). Every name is a
/// valid HFTP name (no `/`, not `.` or `..`: the listing's are checked by
/// the decoder), so `DIR/NAME` never leaves DIR. Patterns that match
/// nothing come back as errors beside the names, so that the others are
/// still fetched.
fn expand(
    client: &mut Option<Client>,
    mirrors: &[Endpoint],
    files: Option<Vec<String>>,
) -> Result<(Vec<String>, Vec<Error>), Error> {
    let needs_listing = files
        .as_ref()
        .is_none_or(|f| f.iter().any(|f| hftp_client::is_glob(f)));
    let listing = if needs_listing {
        let c = connected(client, mirrors)?;
        let mut names = c.list()?;
        names.sort_unstable();
        names
    } else {
        Vec::new()
    };
    let mut out: Vec<String> = Vec::new();
    let mut unmatched = Vec::new();
    let mut add = |name: &str| {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    };
    match files {
        None => listing.iter().for_each(|n| add(n)),
        Some(files) => {
            for f in &files {
                if !hftp_client::is_glob(f) {
                    hftp_client::check_name(f)?;
                    add(f);
                    continue;
                }
                let matched: Vec<&String> = listing
                    .iter()
                    .filter(|n| hftp_client::glob_match(f, n))
                    .collect();
                if matched.is_empty() {
                    unmatched.push(Error::NoMatch {
                        pattern: f.clone(),
                        listed: listing.len(),
                    });
                    continue;
                }
                matched.into_iter().for_each(|n| add(n));
            }
        }
    }
    for name in &out {
        hftp_client::check_name(name)?;
    }
    Ok((out, unmatched))
}

/// The open connection in `client`, (re)connecting if needed: to the
/// first of `mirrors` that answers (the download then warns about the
/// others), else the first one's error.
fn connected<'a>(
    client: &'a mut Option<Client>,
    mirrors: &[Endpoint],
) -> Result<&'a mut Client, Error> {
    if client.as_ref().is_none_or(Client::is_broken) {
        let mut first_error = None;
        for mirror in mirrors {
            match mirror.connect() {
                Ok(c) => {
                    *client = Some(c);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if client.as_ref().is_none_or(Client::is_broken) {
            return Err(
                first_error.unwrap_or_else(|| Error::Internal("no server to connect to".into()))
            );
        }
    }
    client
        .as_mut()
        .ok_or_else(|| Error::Internal("no connection after connecting".into()))
}

/// Downloads one file from `mirrors` (usually one server), (re)connecting
/// `client` as needed.
fn get_one(
    client: &mut Option<Client>,
    mirrors: &[Endpoint],
    name: &str,
    dest: &Path,
    opts: &DownloadOptions,
    bar: &Bar,
) -> Result<(), Error> {
    let c = connected(client, mirrors)?;
    let started = Instant::now();
    let done = hftp_client::download_from(c, mirrors, name, dest, opts, bar).map_err(|e| {
        // One line says what failed and what was kept for a resume.
        let ours = !matches!(
            e,
            Error::Exists(_)
                | Error::Usage(_)
                | Error::PartMismatch { .. }
                | Error::TooLarge { .. }
                | Error::Superseded { .. }
        );
        match hftp_client::part_paths(dest) {
            Ok((part, _)) if ours && part.exists() => Error::Kept {
                source: Box::new(e),
                part,
            },
            _ => e,
        }
    })?;
    if bar.summarises() {
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        let rate = ((done.size - done.resumed) as f64 / secs) as u64;
        eprintln!(
            "{} -> {}: {} in {:.1} s ({}/s, {} connection{}{})",
            name,
            done.path.display(),
            bar.size(done.size),
            secs,
            bar.size(rate),
            done.connections,
            if done.connections == 1 { "" } else { "s" },
            if done.resumed > 0 {
                format!(", {} resumed", bar.size(done.resumed))
            } else {
                String::new()
            },
        );
    }
    Ok(())
}

pub fn shell(args: ShellArgs) -> anyhow::Result<ExitCode> {
    run(&args.conn, || {
        args.conn.endpoint()?;
        Endpoint::parse(&args.conn.target)?;
        shell::run(args.conn.endpoint()?, args.conn.max_time(None))
    })
}

mod shell;
