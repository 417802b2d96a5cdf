//! The tests' own S3 client for one prefix of the Garage test bucket: lays
//! out fixtures (as an `hftp_check` fixture sink) and objects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use hftp_check::fixtures::FixtureSink;
use hftp_check::{report, Outcome, Summary};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::garage::{BUCKET, KEY_ID, REGION, SECRET};

/// The test's own S3 client for one prefix of the bucket, on a small
/// runtime of its own: lays out fixtures and objects.
pub struct Bucket {
    store: AmazonS3,
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    /// A client of the test bucket at `endpoint` (a node, or a load
    /// balancer in front of the nodes).
    pub fn new(endpoint: &str, prefix: &str) -> Arc<Bucket> {
        let store = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region(REGION)
            .with_bucket_name(BUCKET)
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .build()
            .expect("S3 client");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Arc::new(Bucket {
            store,
            prefix: prefix.to_string(),
            runtime,
        })
    }

    pub fn key(&self, name: &str) -> Key {
        Key::from(format!("{}/{name}", self.prefix))
    }

    /// A key outside this prefix (or any raw key).
    pub fn put_raw(&self, key: &str, content: &[u8]) {
        let payload = PutPayload::from(content.to_vec());
        self.runtime
            .block_on(self.store.put(&Key::from(key), payload))
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    }

    /// Creates `names` as empty objects, 64 requests at a time.
    pub fn put_many_empty(&self, names: &[String]) {
        self.runtime
            .block_on(async {
                stream::iter(names)
                    .map(|name| {
                        let key = self.key(name);
                        async move { self.store.put(&key, PutPayload::new()).await }
                    })
                    .buffer_unordered(64)
                    .try_for_each(|_| async { Ok(()) })
                    .await
            })
            .expect("PUT of the many keys");
    }
}

/// How long the store's listing may take to show a change of the fixtures.
const SETTLE: Duration = Duration::from_secs(10);

impl Bucket {
    /// Every key under the prefix, as the store lists them now.
    fn listed(&self) -> std::io::Result<Vec<Key>> {
        let prefix = Key::from(self.prefix.as_str());
        self.runtime
            .block_on(
                self.store
                    .list(Some(&prefix))
                    .map_ok(|meta| meta.location)
                    .try_collect(),
            )
            .map_err(std::io::Error::other)
    }

    /// Waits until the store's listing shows a change just made. Garage
    /// answers `HEAD`/`GET` read-after-write, but a listing may still show
    /// a key deleted (or lack one written) a moment ago: the conformance
    /// runs saw it about once per thousand fixture changes. The suite
    /// checks that the server lists live, which only means something once
    /// the store does, so a fixture counts as laid out when two listings
    /// in a row agree with it (polled, bounded by [`SETTLE`]).
    fn settle(&self, what: &str, done: impl Fn(&[Key]) -> bool) -> std::io::Result<()> {
        let deadline = std::time::Instant::now() + SETTLE;
        let mut agreeing = 0;
        while agreeing < 2 {
            agreeing = if done(&self.listed()?) {
                agreeing + 1
            } else {
                0
            };
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "the store's listing did not show {what} within {SETTLE:?}"
                )));
            }
            if agreeing < 2 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

impl FixtureSink for Bucket {
    fn put(&self, name: &str, content: &[u8]) -> std::io::Result<()> {
        let payload = PutPayload::from(content.to_vec());
        let key = self.key(name);
        self.runtime
            .block_on(self.store.put(&key, payload))
            .map_err(std::io::Error::other)?;
        self.settle(&format!("{key} written"), |keys| keys.contains(&key))
    }

    fn get(&self, name: &str) -> std::io::Result<Vec<u8>> {
        self.runtime
            .block_on(async { self.store.get(&self.key(name)).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(std::io::Error::other)
    }

    fn delete(&self, name: &str) -> std::io::Result<()> {
        let key = self.key(name);
        self.runtime
            .block_on(self.store.delete(&key))
            .map_err(std::io::Error::other)?;
        self.settle(&format!("{key} deleted"), |keys| !keys.contains(&key))
    }

    /// One `DELETE` per key, a few at a time: unlike a bulk delete (a
    /// `POST`), each is idempotent and retried by the client.
    fn clear(&self) -> std::io::Result<()> {
        let prefix = Key::from(self.prefix.as_str());
        self.runtime
            .block_on(async {
                let keys: Vec<Key> = self
                    .store
                    .list(Some(&prefix))
                    .map_ok(|meta| meta.location)
                    .try_collect()
                    .await?;
                stream::iter(keys)
                    .map(|key| async move { self.store.delete(&key).await })
                    .buffer_unordered(16)
                    .try_for_each(|()| async { Ok(()) })
                    .await
            })
            .map_err(std::io::Error::other)?;
        self.settle("the prefix emptied", |keys| keys.is_empty())
    }
}

/// Runs the whole conformance suite against the server at `addr`, its
/// fixtures written to `bucket` (which the server serves); panics, naming
/// `what`, on any failure, or if more than cases a bucket cannot hold
/// (links, FIFOs, permissions) are skipped. Returns the summary line.
pub fn conformance(addr: SocketAddr, bucket: Arc<Bucket>, what: &str) -> String {
    // Each request is a round trip to a replicated store (a few ms): the
    // suite's 1,000 pipelined requests need more than its default 5 s.
    let config = hftp_check::Config {
        timeout: Duration::from_secs(60),
        ..hftp_check::Config::new(addr)
    };
    let cases = hftp_check::cases::all();
    let selection: Vec<_> = cases.iter().collect();
    let results =
        hftp_check::run_with_sink(&config, bucket, &selection, |_| {}).expect("suite runs");
    let problems: Vec<String> = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
        .map(report::text)
        .collect();
    let skipped = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Skip { .. }))
        .count();
    assert!(
        problems.is_empty(),
        "{what}: {}\n{}",
        Summary::of(&results),
        problems.join("\n")
    );
    assert!(
        skipped * 4 < results.len(),
        "{what}: {skipped} of {} cases skipped",
        results.len()
    );
    Summary::of(&results).to_string()
}
