//! The documentation agrees with the code and with itself:
//!
//! - README's table of environment variables is exactly what the real CLI
//!   declares (every `[env: HFTP_...]` of every `hftp COMMAND --help`); on
//!   a mismatch the test prints the table to paste. No document names an
//!   `HFTP_*` variable the CLI (or the build script) does not read.
//! - Every relative link of README.md, BENCHMARKS.md, docs/*.md and
//!   docs/es/*.md points at a file that exists, and at a heading that
//!   exists when it names one.
//! - No document cites an issue number ("issue 12", "#12"): the tracker is
//!   not part of the repository, so such a citation means nothing to a
//!   reader of it.
//! - How long the tests and builds take is stated in one place only: the
//!   blocks of README.md between `<!-- durations -->` and
//!   `<!-- /durations -->`. A sentence elsewhere that states a duration and
//!   names a test file, a tier, CI or a build command, or says how long a
//!   test takes, fails, so figures cannot drift apart.
//! - `dist/build-packages.sh` without its tools names each missing one with
//!   its install command and points at docs/release.md, before building.
//! - The one-node recipe of docs/scale-out.md is marked as the full-tier
//!   test `garage_recipe.rs` expects (that test runs it).
//! - README's table of tests has a row for every module of
//!   `tests/integration.rs`, in the tier its header states, and its list of
//!   what `.ci/install` installs is the script's.
//! - Each Spanish page `docs/es/X.md` keeps in step with `docs/X.md`: the
//!   same headings (count, levels, leading section numbers, `code` in
//!   them), the two pages link to each other, and for the protocol and
//!   `hftp check` the same fenced code blocks, section by section, byte for
//!   byte (so `protocol_doc.rs`, which replays the English wire examples,
//!   vouches for the Spanish ones too), but for the checker's output shown
//!   as `--lang es` prints it, where only the checker's words may change. A
//!   failure names the first section that differs.
//!
//! Tier: quick.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HFTP: &str = env!("CARGO_BIN_EXE_hftp");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The `.md` files of the folder `dir` (relative to the repository root,
/// as are the paths returned), sorted.
fn markdown_in(dir: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}/: {e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{dir}/: {e}")).file_name())
        .filter_map(|name| name.to_str().map(str::to_string))
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    found.sort();
    found
}

/// The documents these tests read, relative to the repository root.
fn documents() -> Vec<String> {
    let mut docs = vec!["README.md".to_string(), "BENCHMARKS.md".to_string()];
    docs.extend(markdown_in("docs"));
    docs.extend(markdown_in("docs/es"));
    docs
}

/// `hftp ARGS`, run with no `HFTP_*` variable set (clap would show their
/// values in `--help`).
fn hftp(args: &[&str]) -> Output {
    let mut command = Command::new(HFTP);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HFTP_") {
            command.env_remove(key);
        }
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run hftp {args:?}: {e}"));
    assert!(
        out.status.success(),
        "hftp {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The lines of the section of `help` that starts with the line `title`
/// (e.g. `Options:`), up to the next line that is not indented.
fn help_section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|line| *line != title)
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .collect()
}

/// Every subcommand path of `hftp` (`["serve"]`, ...; nested ones too),
/// as `hftp --help` lists them.
fn subcommands(path: &[String]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = String::from_utf8(hftp(&args).stdout).expect("UTF-8 help");
    let mut found = Vec::new();
    for line in help_section(&help, "Commands:") {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name == "help" {
            continue;
        }
        let mut sub = path.to_vec();
        sub.push(name.to_string());
        found.push(sub.clone());
        found.extend(subcommands(&sub));
    }
    found
}

/// One `env = "..."` of the CLI: the variable, the option as `--help`
/// writes it (`-d, --directory <DIR>`) and the commands that have it.
#[derive(Debug)]
struct EnvVar {
    name: String,
    option: String,
    commands: Vec<String>,
}

/// The `[env: NAME=...]` of each option in `help`'s `Options:` section.
fn env_of_options(help: &str) -> Vec<(String, String)> {
    // An option's block: its first line (indented by at most 6 columns,
    // starting with `-x` or `--x`) and the lines after it up to the next.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help_section(help, "Options:") {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let starts_option = indent <= 6
            && trimmed.starts_with('-')
            && trimmed[1..].starts_with(|c: char| c == '-' || c.is_ascii_alphanumeric());
        if starts_option {
            // `--proxy <URL>      Connect through ...` (the short form) or
            // `-d, --directory <DIR>` alone on its line (the long form).
            let option = trimmed.split("  ").next().unwrap_or(trimmed).to_string();
            blocks.push((option, line.to_string()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push(' ');
            text.push_str(line);
        }
    }
    let mut found = Vec::new();
    for (option, text) in blocks {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("[env:") {
            let after = rest[at + "[env:".len()..].trim_start();
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(
                name.starts_with("HFTP_") && after[name.len()..].starts_with('='),
                "option {option}: cannot read the variable in {:?}",
                &rest[at..]
            );
            rest = &after[name.len()..];
            found.push((name, option.clone()));
        }
    }
    found
}

/// Every variable the CLI reads, in the order `--help` shows them.
fn cli_env_vars() -> Vec<EnvVar> {
    let mut vars: Vec<EnvVar> = Vec::new();
    for path in subcommands(&[]) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = String::from_utf8(hftp(&args).stdout).expect("UTF-8 help");
        let command = path.join(" ");
        for (name, option) in env_of_options(&help) {
            match vars
                .iter_mut()
                .find(|v| v.name == name && v.option == option)
            {
                Some(var) => var.commands.push(command.clone()),
                None => vars.push(EnvVar {
                    name,
                    option,
                    commands: vec![command.clone()],
                }),
            }
        }
    }
    vars
}

const ENV_BEGIN: &str = "<!-- env-vars -->";
const ENV_END: &str = "<!-- /env-vars -->";

/// README's table of variables, as the CLI would write it.
fn env_table(vars: &[EnvVar]) -> String {
    let mut table = String::from("| variable | option | commands |\n|---|---|---|\n");
    for var in vars {
        let commands: Vec<String> = var.commands.iter().map(|c| format!("`{c}`")).collect();
        table.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            var.name,
            var.option,
            commands.join(", ")
        ));
    }
    table
}

/// The text between `begin` and `end` in `doc` (each on a line of its
/// own), trimmed of blank lines at either end.
fn between<'a>(doc: &'a str, begin: &str, end: &str, what: &str) -> &'a str {
    let start = doc
        .find(begin)
        .unwrap_or_else(|| panic!("{what}: no {begin} line"))
        + begin.len();
    let stop = doc[start..]
        .find(end)
        .unwrap_or_else(|| panic!("{what}: no {end} after {begin}"))
        + start;
    doc[start..stop].trim_matches('\n')
}

#[test]
fn readme_lists_exactly_the_environment_variables_of_the_cli() {
    let vars = cli_env_vars();
    assert!(
        vars.iter().any(|v| v.name == "HFTP_PORT"),
        "the parser of --help found no HFTP_PORT: {vars:?}"
    );
    let readme = read("README.md");
    let documented = between(&readme, ENV_BEGIN, ENV_END, "README.md");
    let expected = env_table(&vars);
    assert_eq!(
        documented,
        expected.trim_end(),
        "README.md's table of environment variables disagrees with the CLI; \
         put this between {ENV_BEGIN} and {ENV_END}:\n\n{expected}"
    );
}

/// Every `HFTP_*` word of `text`.
fn hftp_variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("HFTP_") {
        let before = rest[..at].chars().next_back();
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        // `HFTP_*` stands for all of them.
        if name.len() > "HFTP_".len() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn documents_name_no_variable_that_nothing_reads() {
    let mut known: BTreeSet<String> = cli_env_vars().into_iter().map(|v| v.name).collect();
    // Read at build time: the build script declares them.
    let build = read("crates/cli/build.rs");
    for line in build.lines() {
        if let Some((_, name)) = line.split_once("rerun-if-env-changed=") {
            known.insert(name.trim_end_matches(['"', ')', ';']).to_string());
        }
    }
    let mut stale = Vec::new();
    for doc in documents() {
        for name in hftp_variables(&read(&doc)) {
            if !known.contains(&name) {
                stale.push(format!("{doc}: {name}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "documents name variables that neither the CLI nor the build reads (known: {known:?}):\n{}",
        stale.join("\n")
    );
}

/// `doc` without its fenced code blocks (each replaced by an empty line,
/// so line numbers stay), and with inline code spans blanked out.
fn prose(doc: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            lines.push(String::new());
            continue;
        }
        if fenced {
            lines.push(String::new());
            continue;
        }
        // Blank out `code` spans (a line's backticks pair up).
        let mut out = String::with_capacity(line.len());
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                out.push(' ');
            } else {
                out.push(if in_code { ' ' } else { c });
            }
        }
        lines.push(out);
    }
    lines
}

/// Every link target of `doc`'s prose: `[text](target)` and `[label]: target`.
fn link_targets(doc: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    for (n, line) in prose(doc).iter().enumerate() {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(['<', '>']);
            targets.push((n + 1, target.to_string()));
            rest = &after[end..];
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            if let Some((label, target)) = trimmed.split_once("]: ") {
                if !label.contains("](") {
                    targets.push((n + 1, target.trim().to_string()));
                }
            }
        }
    }
    targets
}

/// GitHub's anchors of `doc`'s headings: lower case, punctuation but `-`
/// and `_` dropped, spaces as `-`; a repeated one gets `-1`, `-2`, ...
fn anchors(doc: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

#[test]
fn relative_links_point_at_files_and_headings_that_exist() {
    let root = repo_root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        let base = Path::new(&doc).parent().unwrap_or(Path::new(""));
        for (line, target) in link_targets(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target.as_str(), None),
            };
            let relative = if file.is_empty() {
                PathBuf::from(&doc)
            } else {
                base.join(file)
            };
            let path = root.join(&relative);
            if !path.exists() {
                broken.push(format!(
                    "{doc}:{line}: {target}: no such file ({})",
                    relative.display()
                ));
                continue;
            }
            if let (Some(fragment), true) = (fragment, file.is_empty() || file.ends_with(".md")) {
                let target_text = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&target_text).contains(fragment) {
                    broken.push(format!(
                        "{doc}:{line}: {target}: {} has no heading #{fragment}",
                        relative.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} relative links found: the parser is broken"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Where `line` cites an issue: `issue 12`, `issues 9 and 12`, `#12`.
fn issue_citation(line: &str) -> Option<String> {
    let lower = line.to_lowercase();
    for word in ["issue", "issues"] {
        let mut rest = lower.as_str();
        while let Some(at) = rest.find(word) {
            let before = rest[..at].chars().next_back();
            let after = rest[at + word.len()..].trim_start_matches([' ', '#']);
            let boundary = !before.is_some_and(char::is_alphanumeric)
                && rest[at + word.len()..].starts_with([' ', '#']);
            if boundary && after.starts_with(|c: char| c.is_ascii_digit()) {
                return Some(rest[at..].chars().take(20).collect());
            }
            rest = &rest[at + word.len()..];
        }
    }
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let before_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'&');
        if b == b'#' && before_ok && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return Some(line[i..].chars().take(20).collect());
        }
    }
    None
}

#[test]
fn no_document_cites_an_issue_number() {
    let mut cited = Vec::new();
    for doc in documents() {
        for (n, line) in read(&doc).lines().enumerate() {
            // Link targets may hold anchors such as `#8-decisions-...`.
            let mut text = String::new();
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                text.push_str(&rest[..at]);
                rest = rest[at..].find(')').map_or("", |end| &rest[at + end..]);
            }
            text.push_str(rest);
            if let Some(citation) = issue_citation(&text) {
                cited.push(format!("{doc}:{}: {citation}...", n + 1));
            }
        }
    }
    assert!(
        cited.is_empty(),
        "documents cite issues of a tracker that is not in the repository; say what they \
         refer to in words instead:\n{}",
        cited.join("\n")
    );
}

#[test]
fn the_issue_pattern_finds_what_it_should() {
    for line in ["(issue 15)", "Issues 9 and 12", "see #12.", "issue #3"] {
        assert!(issue_citation(line).is_some(), "{line:?}");
    }
    for line in [
        "an issue in the tracker",
        "issue-free",
        "C#1",
        "`#` 1",
        "&#8212;",
    ] {
        assert!(issue_citation(line).is_none(), "{line:?}");
    }
}

const DURATIONS_BEGIN: &str = "<!-- durations -->";
const DURATIONS_END: &str = "<!-- /durations -->";

/// Paragraphs (runs of non-blank lines; a fenced block is one) of `doc`,
/// with the line each starts on, leaving out README's duration blocks.
fn paragraphs(doc: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut fenced = false;
    let mut in_durations = false;
    for (n, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed == DURATIONS_BEGIN {
            in_durations = true;
        }
        if in_durations {
            in_durations = trimmed != DURATIONS_END;
            found.extend(current.take());
            continue;
        }
        if trimmed.starts_with("```") {
            fenced = !fenced;
        }
        // A table row is a paragraph of its own.
        let row = trimmed.starts_with('|');
        if (trimmed.is_empty() && !fenced) || row {
            found.extend(current.take());
            if row {
                found.push((n + 1, line.to_string()));
            }
            continue;
        }
        let (_, text) = current.get_or_insert_with(|| (n + 1, String::new()));
        text.push_str(line);
        text.push('\n');
    }
    found.extend(current);
    found
}

/// A duration in `text`: a number followed by a unit of time
/// (`about 4 minutes`, `2 to 3 minutes`, `35 s`, `9 min 21 s`).
fn duration(text: &str) -> Option<String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';' | ':'))
        .filter(|w| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        let number = pair[0].trim_start_matches('~');
        let is_number = !number.is_empty()
            && number
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '–' | '-' | '½'))
            && number.starts_with(|c: char| c.is_ascii_digit());
        let unit = pair[1].trim_end_matches(['.', '!', '?']);
        let is_unit = matches!(
            unit,
            "s" | "sec"
                | "secs"
                | "second"
                | "seconds"
                | "min"
                | "mins"
                | "minute"
                | "minutes"
                | "h"
                | "hour"
                | "hours"
        );
        if is_number && is_unit {
            return Some(format!("{} {}", pair[0], pair[1]));
        }
    }
    None
}

/// Whether a sentence is about how long tests or builds run: it names a
/// test file, a tier, CI or a build command, or says a test takes.
fn about_tests_or_builds(sentence: &str) -> Option<&'static str> {
    [
        "tests/",
        "cargo test",
        "cargo build",
        "cargo run",
        ".ci/run",
        ".ci/install",
        " tier",
        "test takes",
        "tests take",
        "test took",
        "tests took",
        "suite run",
        "takes about",
        "take about",
    ]
    .into_iter()
    .find(|needle| sentence.contains(needle))
}

/// The sentences of a paragraph, on one line each.
fn sentences(paragraph: &str) -> Vec<String> {
    let flat = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    let mut rest = flat.as_str();
    while let Some(at) = [". ", "; ", "? ", "! "]
        .iter()
        .filter_map(|end| rest.find(end))
        .min()
    {
        found.push(rest[..=at].to_string());
        rest = &rest[at + 2..];
    }
    found.push(rest.to_string());
    found
}

#[test]
fn test_and_build_durations_are_stated_in_one_place() {
    let readme = read("README.md");
    assert!(
        readme.contains(DURATIONS_BEGIN),
        "README.md has no {DURATIONS_BEGIN} block: the one place durations are stated"
    );
    let mut elsewhere = Vec::new();
    for doc in documents() {
        for (line, text) in paragraphs(&read(&doc)) {
            for sentence in sentences(&text) {
                if let (Some(topic), Some(figure)) =
                    (about_tests_or_builds(&sentence), duration(&sentence))
                {
                    elsewhere.push(format!(
                        "{doc}:{line}: {figure:?} in a sentence with {topic:?}: {sentence}"
                    ));
                }
            }
        }
    }
    assert!(
        elsewhere.is_empty(),
        "how long tests and builds take belongs in README.md's {DURATIONS_BEGIN} blocks only \
         (link to them instead):\n{}",
        elsewhere.join("\n")
    );
}

#[test]
fn the_duration_pattern_finds_what_it_should() {
    for text in [
        "takes about 4 minutes",
        "(2 to 3 minutes)",
        "35 s.",
        "2–8 minutes",
    ] {
        assert!(duration(text).is_some(), "{text:?}");
    }
    for text in ["32 MiB/s", "a 256 MiB object", "port 19500", "2 cores"] {
        assert!(duration(text).is_none(), "{text:?}");
    }
}

#[test]
fn the_duration_rule_catches_figures_that_drifted_before() {
    let flagged = |text: &str| {
        sentences(text)
            .iter()
            .any(|s| about_tests_or_builds(s).is_some() && duration(s).is_some())
    };
    for text in [
        "saying so. It takes about 4 minutes (most of it the four conformance runs), and runs alone",
        "waited for together, so a suite run takes about 35 s, most of it spent laying out fixtures",
        "The package test (`crates/cli/tests/packages.rs`) runs this same script, once, for its \
         three tests: about 2 to 3 minutes of CI from a cold target directory",
        "`.ci/run` takes about 17 minutes on 2 cores (clippy 3, the test build 4, the tests 9)",
    ] {
        assert!(flagged(text), "{text:?}");
    }
    for text in [
        "fatal error (flush, shut down writing, drain input for at most 0.5 s or 64 MiB). \
         It never reads the clock, so `crates/server/tests/connection.rs` drives it",
        "then SIGKILL to what is left after 2 s",
    ] {
        assert!(!flagged(text), "{text:?}");
    }
}

#[test]
fn build_packages_names_its_missing_tools_before_building() {
    // A PATH with nothing but `dirname` (the script's first command): no
    // cargo, no cargo-deb, no maturin.
    let bin = tempfile::tempdir().expect("temp dir");
    let dirname = ["/usr/bin/dirname", "/bin/dirname"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dirname");
    std::os::unix::fs::symlink(dirname, bin.path().join("dirname")).expect("symlink");
    let cargo_home = tempfile::tempdir().expect("temp dir");
    let out = Command::new("/bin/sh")
        .arg(repo_root().join("dist/build-packages.sh"))
        .arg(bin.path().join("out"))
        .env("PATH", bin.path())
        .env("CARGO_HOME", cargo_home.path())
        .output()
        .expect("run dist/build-packages.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "it succeeded without tools: {stderr}"
    );
    for needed in [
        "cargo-deb",
        "cargo install cargo-deb --locked",
        "maturin",
        "python3 -m venv",
        "PEP 668",
        "docs/release.md",
    ] {
        assert!(stderr.contains(needed), "no {needed:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("no such command"), "{stderr}");
    assert!(
        !bin.path().join("out").exists(),
        "it started working before checking its tools"
    );
}

#[test]
fn the_scale_out_recipe_is_marked_for_its_test() {
    use crate::garage_recipe::{recipe, substitute, PLACEHOLDERS};
    let blocks = recipe(&read("docs/scale-out.md"));
    let servers: Vec<&str> = blocks
        .iter()
        .filter(|b| b.server)
        .filter_map(|b| b.text.split_whitespace().next())
        .collect();
    assert_eq!(
        servers,
        ["garage", "hftp"],
        "the server blocks of docs/scale-out.md's one-node recipe"
    );
    assert!(
        blocks.iter().filter(|b| !b.server).count() >= 3,
        "the one-node recipe lost blocks"
    );
    for placeholder in PLACEHOLDERS {
        assert!(
            blocks
                .iter()
                .any(|b| substitute(&b.text, placeholder, "1").1 > 0),
            "no block of the one-node recipe names the placeholder port {placeholder}"
        );
    }
    assert_eq!(
        substitute("a 3900 13900 3900x", "3900", "7").0,
        "a 7 13900 7x"
    );
}

/// The modules of `tests/integration.rs` that hold tests (not `support`).
fn integration_modules() -> Vec<String> {
    read("crates/cli/tests/integration.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';'))
        .filter(|name| !matches!(*name, "support" | "hostile"))
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_has_a_row_for_every_integration_test_module_in_its_tier() {
    let readme = read("README.md");
    let rows: Vec<(&str, &str)> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | tier | `cli/tests/NAME.rs` | what |
            let file = cells
                .get(2)?
                .strip_prefix("`cli/tests/")?
                .strip_suffix(".rs`")?;
            Some((cells[1], file))
        })
        .collect();
    let mut missing = Vec::new();
    let modules = integration_modules();
    assert!(modules.len() > 10, "modules of integration.rs: {modules:?}");
    for module in &modules {
        let header = read(&format!("crates/cli/tests/{module}.rs"));
        let tier = header
            .lines()
            .find_map(|line| line.strip_prefix("//! Tier: "))
            .and_then(|rest| rest.split([' ', '.', ',', '(']).next())
            .unwrap_or_else(|| panic!("tests/{module}.rs: no `//! Tier: ` line in its header"));
        if !rows.contains(&(tier, module.as_str())) {
            missing.push(format!("| {tier} | `cli/tests/{module}.rs` | ... |"));
        }
    }
    for (_, file) in &rows {
        assert!(
            modules.iter().any(|m| m == file),
            "README.md's table of tests names cli/tests/{file}.rs, which integration.rs does not hold"
        );
    }
    assert!(
        missing.is_empty(),
        "README.md's table of tests lacks rows (tier from each module's header):\n{}",
        missing.join("\n")
    );
}

#[test]
fn readme_names_the_debian_packages_ci_install_brings() {
    let install = read(".ci/install");
    let script: BTreeSet<&str> = install
        .split("need+=(")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .collect();
    assert!(
        script.contains("haproxy"),
        "need+=(...) of .ci/install: {script:?}"
    );
    let readme = read("README.md");
    let listed: BTreeSet<&str> = readme
        .split("Debian's `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("README.md: \"Debian's `PACKAGES`\" in the full tier's paragraph")
        .split_whitespace()
        .collect();
    assert_eq!(
        listed, script,
        "README.md's list of Debian packages (left) is not what .ci/install installs (right)"
    );
}

/// The Spanish pages whose fenced code blocks must be those of the English
/// page, byte for byte: the protocol's wire examples and the checker's
/// commands are not translated. (docs/es/tor.md translates its diagram and
/// the comments of its shell blocks; its headings and links are checked.)
const VERBATIM_BLOCKS: &[&str] = &["protocol.md", "check.md"];

/// The line right before a fence of a Spanish page that marks the block as
/// the checker's output in Spanish (`hftp check --lang es`): it stands for
/// the English block at its place, and [`same_output_in_spanish`] checks
/// that only the checker's own words changed.
const SPANISH_OUTPUT: &str = "<!-- salida en castellano -->";

/// The `code` spans of a line (its backticks pair up).
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// A heading: its line, its level (`##` is 2) and its text.
#[derive(Debug)]
struct Heading {
    line: usize,
    level: usize,
    text: String,
}

impl Heading {
    /// `## 4. File names`, as written.
    fn shown(&self) -> String {
        format!("{} {}", "#".repeat(self.level), self.text)
    }

    /// The leading section number (`4.` of `4. File names`), or "".
    fn number(&self) -> &str {
        let end = self
            .text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(self.text.len());
        &self.text[..end]
    }
}

/// A fenced code block: the line of its opening fence, the index of the
/// heading it sits under (`None` before the first), its lines from fence
/// to fence, and whether [`SPANISH_OUTPUT`] marks it.
#[derive(Debug)]
struct Block {
    line: usize,
    section: Option<usize>,
    lines: Vec<String>,
    spanish_output: bool,
}

/// A page's headings and fenced code blocks.
#[derive(Debug)]
struct Page {
    path: String,
    headings: Vec<Heading>,
    blocks: Vec<Block>,
}

impl Page {
    fn parse(path: &str, text: &str) -> Page {
        let mut headings: Vec<Heading> = Vec::new();
        let mut blocks: Vec<Block> = Vec::new();
        let mut open: Option<Block> = None;
        let mut previous = "";
        for (n, line) in text.lines().enumerate() {
            let fence = line.trim_start().starts_with("```");
            if let Some(block) = open.as_mut() {
                block.lines.push(line.to_string());
                if fence {
                    blocks.extend(open.take());
                }
            } else if fence {
                open = Some(Block {
                    line: n + 1,
                    section: headings.len().checked_sub(1),
                    lines: vec![line.to_string()],
                    spanish_output: previous.trim() == SPANISH_OUTPUT,
                });
            } else if line.starts_with('#') {
                let title = line.trim_start_matches('#');
                if title.starts_with(' ') {
                    headings.push(Heading {
                        line: n + 1,
                        level: line.len() - title.len(),
                        text: title.trim().to_string(),
                    });
                }
            }
            previous = line;
        }
        assert!(open.is_none(), "{path}: a code block is not closed");
        Page {
            path: path.to_string(),
            headings,
            blocks,
        }
    }

    /// The section a block sits in, for messages.
    fn section(&self, index: Option<usize>) -> String {
        match index {
            Some(i) => format!(
                "{}:{} `{}`",
                self.path,
                self.headings[i].line,
                self.headings[i].shown()
            ),
            None => format!("{}, before its first heading", self.path),
        }
    }

    fn blocks_in(&self, section: Option<usize>) -> Vec<&Block> {
        self.blocks
            .iter()
            .filter(|b| b.section == section)
            .collect()
    }
}

/// Whether the block `es` is the checker's output `en` with the checker's
/// words in Spanish: the same lines, each with the same indentation and
/// the same `code` (the protocol's bytes); the same first word where it is
/// a status (`FAIL`, `SKIP`, ...); and unchanged where it is a fence, a
/// case's first line (`FAIL id [§2]`), an elision (`...`) or a line the
/// server printed (`| ...`).
fn same_output_in_spanish(en: &[String], es: &[String]) -> Result<(), String> {
    if en.len() != es.len() {
        return Err(format!(
            "it has {} lines, the English block {}",
            es.len(),
            en.len()
        ));
    }
    for (k, (a, b)) in en.iter().zip(es).enumerate() {
        let line = k + 1;
        let trimmed = a.trim_start();
        let first = trimmed.split_whitespace().next().unwrap_or("");
        let kept = ["```", "PASS ", "FAIL ", "NOT RUN ", "|", "..."]
            .iter()
            .any(|start| trimmed.starts_with(start))
            || trimmed.is_empty();
        let status = !first.is_empty() && first.chars().all(|c| c.is_ascii_uppercase());
        let indent = |s: &str| s.len() - s.trim_start().len();
        if kept && a != b {
            return Err(format!("line {line} stays as it is: {a:?}, not {b:?}"));
        }
        if status && b.split_whitespace().next() != Some(first) {
            return Err(format!(
                "line {line} starts with {first:?} in every language: {b:?}"
            ));
        }
        if indent(a) != indent(b) {
            return Err(format!("line {line} is not indented as {a:?}: {b:?}"));
        }
        if code_spans(a) != code_spans(b) {
            return Err(format!(
                "line {line} has other `code` (the protocol's bytes) than {a:?}: {b:?}"
            ));
        }
    }
    Ok(())
}

/// Where the Spanish page `es` stops following the English page `en`,
/// naming the first section that differs: the headings (count, levels,
/// leading section numbers, their `code`), then, with `verbatim_blocks`,
/// the fenced code blocks of each section.
fn compare_pages(en: &Page, es: &Page, verbatim_blocks: bool) -> Result<(), String> {
    let count = en.headings.len().max(es.headings.len());
    for i in 0..count {
        let (a, b) = match (en.headings.get(i), es.headings.get(i)) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) => {
                return Err(format!(
                    "{}:{} `{}` has no counterpart: {} has {} headings, the English page {}",
                    en.path,
                    a.line,
                    a.shown(),
                    es.path,
                    es.headings.len(),
                    en.headings.len()
                ))
            }
            (None, Some(b)) => {
                return Err(format!(
                    "{}:{} `{}` has no counterpart: {} has {} headings, the Spanish page {}",
                    es.path,
                    b.line,
                    b.shown(),
                    en.path,
                    en.headings.len(),
                    es.headings.len()
                ))
            }
            (None, None) => unreachable!(),
        };
        let what = if a.level != b.level {
            Some(format!("level {} against {}", a.level, b.level))
        } else if a.number() != b.number() {
            Some(format!(
                "section number {:?} against {:?}",
                a.number(),
                b.number()
            ))
        } else if code_spans(&a.text) != code_spans(&b.text) {
            Some(format!(
                "`code` {:?} against {:?}",
                code_spans(&a.text),
                code_spans(&b.text)
            ))
        } else {
            None
        };
        if let Some(what) = what {
            return Err(format!(
                "the first section that differs: {}:{} `{}` against {}:{} `{}` ({what})",
                en.path,
                a.line,
                a.shown(),
                es.path,
                b.line,
                b.shown()
            ));
        }
    }
    if !verbatim_blocks {
        return Ok(());
    }
    let sections = std::iter::once(None).chain((0..count).map(Some));
    for section in sections {
        let (ours, theirs) = (en.blocks_in(section), es.blocks_in(section));
        let at = format!("{} and {}", en.section(section), es.section(section));
        if ours.len() != theirs.len() {
            return Err(format!(
                "the first section whose code blocks differ: {at}: {} code blocks in English, {} in Spanish",
                ours.len(),
                theirs.len()
            ));
        }
        for (a, b) in ours.iter().zip(&theirs) {
            let differs = if b.spanish_output {
                same_output_in_spanish(&a.lines, &b.lines)
                    .err()
                    .map(|e| format!("it is marked {SPANISH_OUTPUT}, but {e}"))
            } else {
                let k = a
                    .lines
                    .iter()
                    .zip(&b.lines)
                    .position(|(x, y)| x != y)
                    .unwrap_or(a.lines.len().min(b.lines.len()));
                (a.lines != b.lines).then(|| {
                    format!(
                        "they differ at line {} of the block:\n  English: {:?}\n  Spanish: {:?}",
                        k + 1,
                        a.lines.get(k).map_or("(nothing)", String::as_str),
                        b.lines.get(k).map_or("(nothing)", String::as_str)
                    )
                })
            };
            if let Some(differs) = differs {
                return Err(format!(
                    "the first section whose code blocks differ: {at}: the block of {}:{} is not \
                     the one of {}:{}: {differs}",
                    es.path, b.line, en.path, a.line
                ));
            }
        }
    }
    Ok(())
}

/// `path` with its `..` and `.` resolved (`docs/es/../x.md` is `docs/x.md`).
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether the document `doc` (its path and text) links to the file
/// `target` (both relative to the repository root).
fn links_to(doc: &str, text: &str, target: &str) -> bool {
    let base = Path::new(doc).parent().unwrap_or(Path::new(""));
    link_targets(text).iter().any(|(_, link)| {
        let file = link.split('#').next().unwrap_or("");
        !file.is_empty()
            && !link.contains("://")
            && normalized(&base.join(file)) == Path::new(target)
    })
}

#[test]
fn spanish_pages_keep_in_step_with_the_english_ones() {
    let pages = markdown_in("docs/es");
    for name in VERBATIM_BLOCKS {
        assert!(
            pages.contains(&format!("docs/es/{name}")),
            "docs/es/{name} is missing (pages: {pages:?})"
        );
    }
    let mut problems = Vec::new();
    for es_path in &pages {
        let name = es_path.strip_prefix("docs/es/").expect("docs/es/ page");
        let en_path = format!("docs/{name}");
        assert!(
            repo_root().join(&en_path).exists(),
            "{es_path} translates {en_path}, which does not exist"
        );
        let (en_text, es_text) = (read(&en_path), read(es_path));
        let (en, es) = (
            Page::parse(&en_path, &en_text),
            Page::parse(es_path, &es_text),
        );
        assert!(
            en.headings.len() > 1,
            "{en_path}: the parser found no sections"
        );
        if let Err(problem) = compare_pages(&en, &es, VERBATIM_BLOCKS.contains(&name)) {
            problems.push(problem);
        }
        if !links_to(&en_path, &en_text, es_path) {
            problems.push(format!(
                "{en_path} does not link to {es_path}: add `En castellano: [es/{name}](es/{name}).` \
                 near its top"
            ));
        }
        if !links_to(es_path, &es_text, &en_path) {
            problems.push(format!(
                "{es_path} does not link to {en_path}: add `In English: [../{name}](../{name}).` \
                 near its top"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the Spanish pages do not keep in step with the English ones (translate the change, \
         keeping headings, section numbers and code blocks):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_page_comparison_names_the_first_section_that_differs() {
    let en_text = "# T\n\nIntro.\n\n## 1. One\n\n```hftp\nC: quit\\r\\n\nS: 0 OK\\r\\n\n```\n\n\
                   ## 2. Two\n\n### `quit`\n\n```text\nFAIL a.b [§2]\n     got:      `0 OK`\n\
                   \x20      | boom\n```\n";
    let en = Page::parse("en.md", en_text);
    let es_of = |text: &str| Page::parse("es.md", text);
    let good = "# T\n\nIntro.\n\n## 1. Uno\n\n```hftp\nC: quit\\r\\n\nS: 0 OK\\r\\n\n```\n\n\
                ## 2. Dos\n\n### `quit`\n\n<!-- salida en castellano -->\n```text\n\
                FAIL a.b [§2]\n     recibido: `0 OK`\n       | boom\n```\n";
    assert_eq!(compare_pages(&en, &es_of(good), true), Ok(()));

    let fails = |text: &str, needles: &[&str]| {
        let err = compare_pages(&en, &es_of(text), true)
            .expect_err(&format!("no difference found in:\n{text}"));
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
    };
    // A section number, a level, a heading's code, a missing heading.
    fails(
        &good.replace("## 2. Dos", "## 3. Dos"),
        &["`## 2. Two`", "\"2.\""],
    );
    fails(
        &good.replace("## 2. Dos", "### 2. Dos"),
        &["`## 2. Two`", "level"],
    );
    fails(&good.replace("`quit`\n", "quit\n"), &["`### `quit``"]);
    fails(
        &good.replace("## 1. Uno\n", ""),
        &["`## 1. One`", "section number"],
    );
    fails(
        &good.replace("### `quit`\n", ""),
        &["en.md:14 `### `quit`` has no counterpart"],
    );
    // A wire example changed, a block missing, output not just translated.
    fails(
        &good.replace("0 OK\\r", "0 BIEN\\r"),
        &["en.md:5 `## 1. One`", "line 3"],
    );
    fails(
        &good.replace("```hftp\nC: quit\\r\\n\nS: 0 OK\\r\\n\n```\n", ""),
        &["`## 1. One`", "1 code blocks in English, 0 in Spanish"],
    );
    fails(
        &good.replace("`0 OK`", "`0 BIEN`"),
        &["`### `quit``", "`code`"],
    );
    fails(
        &good.replace("| boom", "| bum"),
        &["`### `quit``", "stays as it is"],
    );
    fails(
        &good.replace("<!-- salida en castellano -->\n", ""),
        &["`### `quit``", "English: \"     got:      `0 OK`\""],
    );
    // Without verbatim blocks, only the headings count.
    assert_eq!(
        compare_pages(&en, &es_of(&good.replace("0 OK\\r", "0 BIEN\\r")), false),
        Ok(())
    );
}
