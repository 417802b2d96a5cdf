//! `hftp completions` and `hftp man`: documentation generated from the real
//! command-line definition, so it can never disagree with `--help`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::Cli;

#[derive(clap::Args)]
#[command(after_long_help = "EXAMPLES:
    hftp completions bash > /etc/bash_completion.d/hftp
    hftp completions zsh > \"${fpath[1]}/_hftp\"
    hftp completions fish > ~/.config/fish/completions/hftp.fish")]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::Args)]
#[command(after_long_help = "EXAMPLES:
    hftp man | man -l -                  read it now
    hftp man --dir /usr/share/man/man1   hftp.1, hftp-serve.1, hftp-get.1, ...")]
pub struct ManArgs {
    /// Write hftp.1 and one hftp-COMMAND.1 page per subcommand into DIR
    /// (created if missing) instead of printing hftp.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "hftp", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    let Some(dir) = args.dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(command).render(&mut out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, page: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut bytes = Vec::new();
        clap_mangen::Man::new(page).render(&mut bytes)?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    for sub in command.get_subcommands() {
        let name = format!("hftp-{}", sub.get_name());
        // The page's title and synopsis name the whole command line.
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("hftp {}", sub.get_name()))
            .version(command.get_version().unwrap_or_default().to_string());
        write(&name, page)?;
    }
    write("hftp", command)?;
    Ok(ExitCode::SUCCESS)
}
