//! One module per subcommand (or family of subcommands).

pub mod bench;
pub mod check;
pub mod client;
pub mod docs;
pub mod grade;
pub mod serve;

use std::path::PathBuf;

use hftp_client::{Endpoint, Error, Identity, Tls, Trust};

/// `server` reached through the SOCKS5 proxy `url` (`--proxy` of `check`
/// and `bench`): the client library's endpoint, whose `open_stream` makes
/// the same handshake `hftp ls --proxy` makes.
fn proxied(server: &str, url: &str) -> anyhow::Result<Endpoint> {
    let proxy = hftp_client::Proxy::parse(url).map_err(|e| anyhow::anyhow!("--proxy: {e}"))?;
    Ok(Endpoint::parse(server)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_proxy(Some(proxy)))
}

/// The TLS options of every command that connects to a server (the
/// client's, `check`, `bench`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Speak TLS (HFTP inside, unchanged), as an hftps:// URL does: for a
    /// server started with `hftp serve --tls-cert`. Its certificate must be
    /// signed by a CA the system trusts (or one of --cacert) and name HOST.
    #[arg(long, help_heading = "TLS")]
    pub tls: bool,
    /// Trust the CA certificates of this PEM file, instead of the system's,
    /// to check the server's certificate: a course's own CA, or a
    /// self-signed server certificate itself. Needs --tls or hftps://.
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub cacert: Option<PathBuf>,
    /// Our client certificate (PEM: the chain, ours first), for a server
    /// that asks for one (mutual TLS, `hftp serve --tls-client-ca`).
    /// Needs --key.
    #[arg(long, value_name = "FILE", requires = "key", help_heading = "TLS")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert. It is read, never printed.
    #[arg(long, value_name = "FILE", requires = "cert", help_heading = "TLS")]
    pub key: Option<PathBuf>,
    /// Do not check the server's certificate at all (who signed it, its
    /// name, its dates): anyone on the path can then read and change the
    /// transfer. For a first try against a test server only; each run
    /// says so on standard error.
    #[arg(long, conflicts_with = "cacert", help_heading = "TLS")]
    pub insecure: bool,
}

impl TlsArgs {
    /// Whether any TLS option was given.
    fn any(&self) -> bool {
        self.tls || self.cacert.is_some() || self.cert.is_some() || self.insecure
    }

    /// `endpoint` with these options: TLS when `--tls` is given or its URL
    /// was `hftps://`. The other options without TLS are a usage error
    /// (they would silently do nothing). `made` keeps the settings once
    /// made, for the next endpoint (mirrors share them, and their files
    /// are read once).
    pub fn apply(&self, endpoint: Endpoint, made: &mut Option<Tls>) -> Result<Endpoint, Error> {
        if endpoint.tls.is_none() && !self.tls {
            if self.any() {
                let option = if self.cacert.is_some() {
                    "--cacert"
                } else if self.cert.is_some() {
                    "--cert"
                } else {
                    "--insecure"
                };
                return Err(Error::Usage(format!(
                    "{option} is for TLS: add --tls, or write the server as hftps://{endpoint}/"
                )));
            }
            return Ok(endpoint);
        }
        if let Some(tls) = made {
            return Ok(endpoint.with_tls(Some(tls.clone())));
        }
        let trust = match (&self.cacert, self.insecure) {
            (Some(file), _) => Trust::CaFile(file.clone()),
            (None, true) => Trust::Insecure,
            (None, false) => Trust::System,
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(Identity {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let tls = Tls::new().with_trust(trust).with_identity(identity);
        // The files are read now: a bad one is said before anything else.
        tls.client_config()?;
        *made = Some(tls.clone());
        Ok(endpoint.with_tls(Some(tls)))
    }

    /// Prints the `--insecure` warning (in the language in force), if given.
    pub fn warn(&self) {
        if self.insecure {
            let spanish = hftp_check::i18n::current() == hftp_check::Lang::Es;
            eprintln!("{}", hftp_client::insecure_warning(spanish));
        }
    }
}
