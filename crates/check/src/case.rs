//! What a case is: a named black-box exchange with its spec section, the
//! served-directory content it needs and what it requires of the server.

use crate::route::Route;
use std::time::Duration;

use crate::conn::Conn;
use crate::escape::show;
use crate::fixtures::{Fixture, FixtureDir};
use crate::i18n::{tr, Catalogue, Lang};
use crate::outcome::Failure;

/// The protocol revision a case belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revision {
    /// Every HFTP server must pass it.
    Classic,
    /// Needs the 2026 revision (`help`, `raw`).
    Rev2026,
}

/// What the connection must do after an exchange's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Non-fatal: it still answers (`quit` → `0 OK`, EOF).
    Open,
    /// Fatal: the server closes (orderly EOF, nothing more).
    Closed,
}

/// A case's body: a plain exchange, or code.
enum Body {
    Exchange {
        send: Vec<u8>,
        answer: Vec<u8>,
        then: Then,
    },
    Custom(fn(&Ctx) -> Result<(), Failure>),
}

/// One named conformance case.
pub struct Case {
    pub id: &'static str,
    /// Section of `HFTP.md` the case checks.
    pub section: &'static str,
    /// What the spec requires, in a line, in English (see [`Case::title`]).
    expected: String,
    /// Served-directory content; `None` when the case does not care.
    pub fixture: Option<Fixture>,
    pub revision: Revision,
    /// Only meaningful against a server that is not root (permission errors).
    pub needs_unprivileged: bool,
    /// Needs a direct TCP connection: what it sends (a half-close) does
    /// not cross a SOCKS proxy or Tor.
    pub needs_direct: bool,
    body: Body,
}

impl Case {
    /// Sends `send` in one write, expects exactly `answer`, then `then`.
    pub fn exchange(
        id: &'static str,
        section: &'static str,
        send: impl Into<Vec<u8>>,
        answer: impl Into<Vec<u8>>,
        then: Then,
    ) -> Case {
        let (send, answer) = (send.into(), answer.into());
        let expected = Catalogue::of(Lang::En).exchange_title(
            &show(&send),
            &show(&answer),
            then == Then::Closed,
        );
        Case::new(id, section, expected, Body::Exchange { send, answer, then })
    }

    /// Runs `run`; `expected` says what it checks.
    pub fn custom(
        id: &'static str,
        section: &'static str,
        expected: &str,
        run: fn(&Ctx) -> Result<(), Failure>,
    ) -> Case {
        Case::new(id, section, expected.to_string(), Body::Custom(run))
    }

    fn new(id: &'static str, section: &'static str, expected: String, body: Body) -> Case {
        Case {
            id,
            section,
            expected,
            fixture: None,
            revision: Revision::Classic,
            needs_unprivileged: false,
            needs_direct: false,
            body,
        }
    }

    /// Declares the served-directory content the case needs.
    pub fn fixture(mut self, fixture: Fixture) -> Case {
        self.fixture = Some(fixture);
        self
    }

    /// Marks the case as 2026-revision only.
    pub fn rev2026(mut self) -> Case {
        self.revision = Revision::Rev2026;
        self
    }

    /// Marks the case as needing a server that does not run as root.
    pub fn unprivileged(mut self) -> Case {
        self.needs_unprivileged = true;
        self
    }

    /// Marks the case as needing a direct connection (no proxy).
    pub fn direct(mut self) -> Case {
        self.needs_direct = true;
        self
    }

    /// What the case needs beyond a server: `dir`, `unprivileged`,
    /// `direct`, `2026`.
    pub fn needs(&self) -> Vec<&'static str> {
        let mut needs = Vec::new();
        if self.fixture.is_some() {
            needs.push("dir");
        }
        if self.needs_unprivileged {
            needs.push("unprivileged");
        }
        if self.needs_direct {
            needs.push("direct");
        }
        if self.revision == Revision::Rev2026 {
            needs.push("2026");
        }
        needs
    }

    /// What the spec requires, in a line, in the language in force.
    pub fn title(&self) -> String {
        match &self.body {
            Body::Exchange { send, answer, then } => {
                tr().exchange_title(&show(send), &show(answer), *then == Then::Closed)
            }
            Body::Custom(_) => tr()
                .case_title(self.id)
                .map_or_else(|| self.expected.clone(), str::to_string),
        }
    }

    /// Whether the case is written in code rather than as one exchange (its
    /// title is then its own sentence, translated by id).
    pub fn is_coded(&self) -> bool {
        matches!(self.body, Body::Custom(_))
    }

    pub fn run(&self, ctx: &Ctx) -> Result<(), Failure> {
        match &self.body {
            Body::Exchange { send, answer, then } => {
                let mut conn = ctx.connect()?;
                conn.request(send, answer)?;
                match then {
                    Then::Open => conn.expect_open(),
                    Then::Closed => conn.expect_eof(),
                }
            }
            Body::Custom(run) => run(ctx),
        }
    }
}

/// What a running case can reach: the server and the served directory.
pub struct Ctx {
    pub route: Route,
    /// Bound on every wait for the server.
    pub timeout: Duration,
    /// Added to the spec's own time bounds (an EOF within 0.5 s of `quit`)
    /// for the delay of the path: zero on a direct connection, a few round
    /// trips through a proxy such as Tor.
    pub slack: Duration,
    dir: Option<FixtureDir>,
}

impl Ctx {
    pub fn new(route: Route, timeout: Duration, dir: Option<FixtureDir>) -> Ctx {
        Ctx {
            route,
            timeout,
            slack: Duration::ZERO,
            dir,
        }
    }

    /// A new connection to the server.
    pub fn connect(&self) -> Result<Conn, Failure> {
        Conn::connect(&self.route, self.timeout)
    }

    /// The served directory. Only cases that declare a fixture may call it:
    /// the runner skips them when there is no directory.
    pub fn dir(&self) -> &FixtureDir {
        self.dir
            .as_ref()
            .expect("case declared no fixture but uses the served directory")
    }
}

/// A fixture-manipulation error inside a case, as a failure of the suite's
/// own set-up.
pub fn setup(what: &str, err: std::io::Error) -> Failure {
    Failure::new(
        tr().setup_step(what),
        tr().setup_expected(),
        err.to_string(),
    )
}
