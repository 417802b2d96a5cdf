//! The client's listing reader against a server on loopback whose listing
//! never ends: `list` stops at its [`ListingLimit`] with
//! [`Error::ListingTooLong`], `list_each` hands over every name as it
//! comes and stops when its callback says so.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::thread;

use hftp_client::{Endpoint, Error, ListingLimit};
use proptest::prelude::*;

/// Serves one connection: `0 OK`, then `names` over and over, in writes of
/// `chunk` bytes, until the client goes away.
fn endless_listing(names: Vec<String>, chunk: usize) -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut wire = Vec::new();
        for n in &names {
            wire.extend_from_slice(n.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        let mut stream = b"0 OK\r\n".iter().chain(wire.iter().cycle()).copied();
        let mut buf = vec![0u8; chunk];
        loop {
            buf.iter_mut()
                .for_each(|b| *b = stream.next().unwrap_or(b'\n'));
            if conn.write_all(&buf).is_err() {
                return;
            }
        }
    });
    addr
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn list_stops_at_the_limit(
        names in prop::collection::vec(name(), 1..10),
        chunk in 1usize..4096,
        max_names in 1u64..5000,
        max_bytes in 1u64..200_000,
    ) {
        let addr = endless_listing(names.clone(), chunk);
        let mut client = Endpoint::parse(&addr).expect("addr").connect().expect("connect");
        client.set_listing_limit(ListingLimit { names: max_names, bytes: max_bytes });
        match client.list() {
            Err(Error::ListingTooLong { names, bytes, .. }) => {
                prop_assert_eq!((names, bytes), (max_names, max_bytes));
            }
            other => prop_assert!(false, "{:?}", other),
        }
        prop_assert!(client.is_broken(), "the rest of the reply is unread");
    }

    #[test]
    fn list_each_streams_until_told_to_stop(
        names in prop::collection::vec(name(), 1..10),
        chunk in 1usize..4096,
        wanted in 1usize..20_000,
    ) {
        let addr = endless_listing(names.clone(), chunk);
        let mut client = Endpoint::parse(&addr).expect("addr").connect().expect("connect");
        let mut seen = 0usize;
        let result = client.list_each(|name| {
            assert_eq!(name, names[seen % names.len()]);
            seen += 1;
            if seen == wanted {
                return Err(Error::Usage("enough".into()));
            }
            Ok(())
        });
        prop_assert!(matches!(result, Err(Error::Usage(_))), "{:?}", result);
        prop_assert_eq!(seen, wanted);
    }
}
