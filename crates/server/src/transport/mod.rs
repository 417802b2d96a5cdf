//! What happens on a connection before the HFTP scanner sees its first
//! byte. Today that is the PROXY protocol header a load balancer sends
//! (`--proxy-protocol`), see [`proxy_header`].

pub mod proxy_header;
