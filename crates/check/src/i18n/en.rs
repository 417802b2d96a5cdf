//! The checker's text in English (the default).

use super::Catalogue;

pub struct English;

impl Catalogue for English {
    fn exchange_title(&self, send: &str, answer: &str, closed: bool) -> String {
        let after = if closed {
            "then EOF"
        } else {
            "connection stays open"
        };
        format!("`{send}` → `{answer}`, {after}")
    }
    fn case_title(&self, _id: &str) -> Option<&'static str> {
        None
    }

    fn label_requires(&self) -> &'static str {
        "requires:"
    }
    fn label_step(&self) -> &'static str {
        "step:    "
    }
    fn label_expected(&self) -> &'static str {
        "expected:"
    }
    fn label_got(&self) -> &'static str {
        "got:     "
    }
    fn label_server(&self) -> &'static str {
        "server:  "
    }
    fn by_section(&self) -> &'static str {
        "By section of the spec:"
    }
    fn skipped_cases(&self, count: usize, first: &str, more: usize) -> String {
        match more {
            0 => format!("SKIP {count} cases ({first})"),
            _ => format!("SKIP {count} cases ({first}, and {more} more)"),
        }
    }
    fn nothing_more(&self) -> String {
        "nothing more before the next request".into()
    }
    fn passed_slowly(&self) -> &'static str {
        "(slow: the first attempt timed out, the second passed)"
    }
    fn trickle_stop(&self, count: usize, case: &str) -> String {
        format!(
            "the server answers a few bytes at a time: {count} cases timed out \
             while bytes were still coming (the last: {case}); checking it would take hours, \
             so the remaining cases are not run"
        )
    }
    fn bugs_heading(&self, count: usize) -> String {
        match count {
            1 => "1 bug, behind every failed case:".into(),
            _ => format!("{count} bugs, the one behind most failed cases first:"),
        }
    }
    fn bug_line(&self, number: usize, title: &str, cases: usize) -> String {
        let s = if cases == 1 { "" } else { "s" };
        format!("{number}. {title}: {cases} case{s}")
    }
    fn caused_by(&self, number: usize) -> String {
        format!("bug {number} (see the list above)")
    }
    fn with_file_present(&self, name: &str) -> String {
        format!(
            "with {name} present the same request gets 201 as required: the server looks \
             for the file before it checks the arguments (§5: shape, name and numbers come \
             before existence)"
        )
    }
    fn hang_context(&self, held: usize, abandoned_by: &str) -> String {
        if abandoned_by.is_empty() {
            format!("the checker held up to {held} connection(s) open during the case")
        } else {
            format!(
                "the checker held up to {held} connection(s) open during the case; earlier \
                 cases left clients \
                 without quit: {abandoned_by}"
            )
        }
    }
    fn hang_hint_abandoned(&self) -> String {
        "likely cause: each client holds a worker until it sends quit, and clients that \
         left without it (closed or reset, as §1 allows) still hold theirs, so new clients \
         wait for ever"
            .into()
    }
    fn hang_hint(&self) -> String {
        "likely cause: the server stopped accepting or answering after this case: \
         look at what it printed"
            .into()
    }
    fn label_reproduce(&self) -> &'static str {
        "reproduce:"
    }
    fn section_counts(
        &self,
        passed: usize,
        failed: usize,
        skipped: usize,
        not_run: usize,
    ) -> String {
        let mut text = format!("{passed} passed, {failed} failed, {skipped} skipped");
        if not_run > 0 {
            text.push_str(&format!(", {not_run} not run"));
        }
        text
    }
    fn troubled_cases(&self) -> &'static str {
        "Cases that crashed or hung the server:"
    }

    fn skip_needs_dir(&self) -> String {
        "needs the served directory to lay out its files: add --dir DIR (the directory the server serves) or --server-cmd CMD (the checker starts the server)".into()
    }
    fn skip_needs_direct(&self) -> String {
        "needs a direct connection: a half-close does not cross a SOCKS proxy or Tor (run it without --proxy)".into()
    }
    fn skip_needs_unprivileged(&self) -> String {
        "needs a server that does not run as root (--unprivileged-server)".into()
    }
    fn skip_classic(&self) -> String {
        "2026 revision only; the server answers `help` with 200 (classic)".into()
    }
    fn not_run(&self, stop: &str) -> String {
        format!("not run: {stop}")
    }
    fn stopped_answering(&self, after: Option<&str>, during: &str) -> String {
        match after {
            Some(after) => format!(
                "the server stopped answering after case {after} (while case {during} was running)"
            ),
            None => format!(
                "the server stopped answering during case {during}, before any case had run"
            ),
        }
    }
    fn crashed_during(&self, status: &str) -> String {
        format!("the server exited during this case ({status})")
    }
    fn hung_during(&self, probe: &str) -> String {
        format!("the server stopped answering during this case ({probe})")
    }
    fn restarted(&self) -> String {
        "restarted it; the next cases run against a fresh server".into()
    }
    fn after_case_step(&self) -> String {
        "after the case".into()
    }
    fn keeps_running(&self) -> String {
        "the server keeps running".into()
    }
    fn restart_failed(&self, during: &str, error: &str) -> String {
        format!("the server could not be restarted after case {during}: {error}")
    }
    fn restarts_exhausted(&self, during: &str, max: u32) -> String {
        format!(
            "the server failed again in case {during} after {max} restarts (--max-restarts); not restarted"
        )
    }
    fn probe_no_answer(&self, secs: f64) -> String {
        format!("a new connection got no answer to `quit` within {secs:.1} s")
    }
    fn probe_eof(&self) -> String {
        "a new connection was closed without an answer to `quit`".into()
    }
    fn log_tail(&self) -> &'static str {
        "its last output:"
    }
    fn crashed_word(&self) -> &'static str {
        "crashed the server"
    }
    fn hung_word(&self) -> &'static str {
        "hung the server"
    }

    fn connect_step(&self, addr: &str) -> String {
        format!("connect to {addr}")
    }
    fn server_accepts(&self) -> String {
        "the server accepts".into()
    }
    fn send_step(&self, sent: &str) -> String {
        format!("send `{sent}`")
    }
    fn server_reads(&self) -> String {
        "the server reads the request".into()
    }
    fn write_failed(&self, error: &str) -> String {
        format!("write failed: {error}")
    }
    fn answer_step(&self, sent: &str) -> String {
        format!("answer to `{sent}`")
    }
    fn after_answer_step(&self, sent: &str) -> String {
        format!("after the answer to `{sent}`")
    }
    fn eof_after(&self, seen: &str, matched: usize, total: usize) -> String {
        format!("`{seen}`, then EOF after {matched} of {total} bytes")
    }
    fn reset_after(&self, seen: &str, matched: usize, total: usize) -> String {
        format!("`{seen}`, then connection reset after {matched} of {total} bytes")
    }
    fn timeout_bytes(&self, matched: usize, total: usize, secs: f64, seen: &str) -> String {
        format!("timeout: {matched} of {total} bytes in {secs:.1} s: `{seen}`")
    }
    fn read_error_after(&self, seen: &str, error: &str) -> String {
        format!("`{seen}`, then read error: {error}")
    }
    fn a_crlf_line(&self) -> String {
        "a line ended by CRLF".into()
    }
    fn line_too_long(&self) -> String {
        "over 1 MiB without CRLF".into()
    }
    fn then_eof(&self, seen: &str) -> String {
        format!("`{seen}`, then EOF")
    }
    fn then_reset(&self, seen: &str) -> String {
        format!("`{seen}`, then connection reset")
    }
    fn timeout_received(&self, seen: &str) -> String {
        format!("timeout; received `{seen}`")
    }
    fn read_error(&self, error: &str) -> String {
        format!("read error: {error}")
    }
    fn eof_within(&self, secs: f64) -> String {
        format!("EOF within {secs:.1} s, nothing more")
    }
    fn more_bytes(&self, bytes: &str) -> String {
        format!("more bytes: `{bytes}`")
    }
    fn reset_not_close(&self) -> String {
        "connection reset (RST) instead of an orderly close".into()
    }
    fn stayed_open(&self) -> String {
        "timeout: the connection stayed open".into()
    }
    fn mismatch_expected(&self, total: usize, offset: usize, window: &str) -> String {
        format!("{total} bytes; from byte {offset}: `{window}`")
    }
    fn mismatch_got(&self, offset: usize, window: &str, began: &str) -> String {
        format!("from byte {offset}: `{window}` (answer began `{began}`)")
    }
    fn setup_step(&self, what: &str) -> String {
        format!("set-up: {what}")
    }
    fn setup_expected(&self) -> String {
        "the suite can prepare the served directory".into()
    }
    fn fixture_step(&self) -> String {
        "set-up: laying out the fixture".into()
    }
    fn fixture_expected(&self) -> String {
        "a writable served directory".into()
    }
    fn panic_step(&self) -> String {
        "running the case".into()
    }
    fn panic_expected(&self) -> String {
        "no panic in the suite".into()
    }
}
