//! One module per subcommand (or family of subcommands).

pub mod bench;
pub mod check;
pub mod client;
pub mod docs;
pub mod grade;
pub mod serve;

/// `server` reached through the SOCKS5 proxy `url` (`--proxy` of `check`
/// and `bench`): the client library's endpoint, whose `open_stream` makes
/// the same handshake `hftp ls --proxy` makes.
fn proxied(server: &str, url: &str) -> anyhow::Result<hftp_client::Endpoint> {
    let proxy = hftp_client::Proxy::parse(url).map_err(|e| anyhow::anyhow!("--proxy: {e}"))?;
    Ok(hftp_client::Endpoint::parse(server)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_proxy(Some(proxy)))
}
