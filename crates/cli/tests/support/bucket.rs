//! The tests' own S3 client for one prefix of the Garage test bucket: lays
//! out fixtures (as an `hftp_check` fixture sink) and objects.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use hftp_check::fixtures::FixtureSink;
use hftp_check::{report, Outcome, Summary};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::garage::{Garage, BUCKET, KEY_ID, REGION, SECRET};

/// The test's own S3 client for one prefix of the bucket, on a small
/// runtime of its own: lays out fixtures and objects.
pub struct Bucket {
    store: AmazonS3,
    /// Where `store` sends its requests.
    endpoint: String,
    /// One client per Garage node, addressed directly: see [`Bucket::settle`].
    witnesses: Vec<AmazonS3>,
    prefix: String,
    runtime: tokio::runtime::Runtime,
    /// Changes made and waited for, and the time they took (microseconds):
    /// what a suite run spends on its fixtures, for the test log.
    settled: AtomicU64,
    settling_micros: AtomicU64,
    /// See [`Bucket::laying_out`].
    layout: std::sync::Mutex<Option<BTreeMap<Key, Vec<u8>>>>,
}

fn client(endpoint: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region(REGION)
        .with_bucket_name(BUCKET)
        .with_access_key_id(KEY_ID)
        .with_secret_access_key(SECRET)
        .build()
        .expect("S3 client")
}

impl Bucket {
    /// A client of the test bucket of `cluster` at `endpoint` (a node, or
    /// a load balancer in front of the nodes).
    pub fn new(cluster: &Garage, endpoint: &str, prefix: &str) -> Arc<Bucket> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Arc::new(Bucket {
            store: client(endpoint),
            endpoint: endpoint.to_string(),
            witnesses: cluster.endpoints().iter().map(|e| client(e)).collect(),
            prefix: prefix.to_string(),
            runtime,
            settled: AtomicU64::new(0),
            settling_micros: AtomicU64::new(0),
            layout: std::sync::Mutex::new(None),
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

    /// Puts `content` at `key` with `x-amz-checksum-crc32`, so that the
    /// store keeps its full-object CRC32 (as AWS keeps a CRC for every new
    /// object). A `PUT` by hand, signed by object_store's signer: the
    /// crate's own `put` sends no CRC.
    pub fn put_with_crc32(&self, key: &str, content: &[u8]) {
        use std::io::{Read, Write};
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, content) as u32;
        let crc = base64_simd::STANDARD.encode_to_string(crc.to_be_bytes());
        let url = format!("{}/{BUCKET}/{key}", self.endpoint);
        let mut request = http::Request::builder()
            .method("PUT")
            .uri(&url)
            .header("x-amz-checksum-crc32", &crc)
            .body(object_store::client::HttpRequestBody::empty())
            .expect("a PUT request");
        let credential = object_store::aws::AwsCredential {
            key_id: KEY_ID.into(),
            secret_key: SECRET.into(),
            token: None,
        };
        object_store::aws::AwsAuthorizer::new(&credential, "s3", REGION)
            .with_sign_payload(false)
            .authorize(&mut request, None);
        let authority = self.endpoint.trim_start_matches("http://");
        let mut socket = std::net::TcpStream::connect(authority).expect("connect to the store");
        socket.set_read_timeout(Some(SETTLE)).unwrap();
        let target = &url[url.find(authority).unwrap() + authority.len()..];
        let mut head = format!("PUT {target} HTTP/1.1\r\n");
        for (name, value) in request.headers() {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            content.len()
        ));
        socket.write_all(head.as_bytes()).unwrap();
        socket.write_all(content).unwrap();
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "PUT {key} with x-amz-checksum-crc32: {answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains(&format!(
                "x-amz-checksum-crc32: {}",
                crc.to_ascii_lowercase()
            )),
            "PUT {key}: the store did not keep the CRC32: {answer}"
        );
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
const SETTLE: Duration = Duration::from_secs(30);

impl Bucket {
    /// Every key under the prefix, as `store` lists them now.
    fn listed(&self, store: &AmazonS3) -> std::io::Result<Vec<Key>> {
        self.block_on(self.list_keys(store))
    }

    async fn list_keys(&self, store: &AmazonS3) -> object_store::Result<Vec<Key>> {
        let prefix = Key::from(self.prefix.as_str());
        store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
    }

    /// Waits until every replica holds a change just made by `change`,
    /// so that any listing from then on shows it.
    ///
    /// Garage answers `HEAD`/`GET` read-after-write, but not a listing: a
    /// write returns once two replicas of three hold it, and a listing
    /// asks two replicas, each of which drops its deleted keys before
    /// the answers are merged, so a replica that has not yet seen a
    /// delete brings the key back (the conformance runs saw it about once
    /// per thousand fixture changes, and under load a replica that missed
    /// a delete for good until anti-entropy ran). The suite checks that
    /// the server lists live, which only means something once the store
    /// does. A Garage node reads its own replica first, so a change
    /// listed by each node, asked directly, is held by all three. A node
    /// that still lists the old state after [`REDO_AFTER`] gets the change
    /// again (a write is idempotent here and goes to every replica).
    /// Bounded by [`SETTLE`].
    fn settle(
        &self,
        what: &str,
        change: impl Fn() -> std::io::Result<()>,
        done: impl Fn(&[Key]) -> bool,
    ) -> std::io::Result<()> {
        let started = Instant::now();
        let settled = self.settle_untimed(what, change, done);
        self.settled.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.settling_micros.fetch_add(micros, Ordering::Relaxed);
        settled
    }

    fn settle_untimed(
        &self,
        what: &str,
        change: impl Fn() -> std::io::Result<()>,
        done: impl Fn(&[Key]) -> bool,
    ) -> std::io::Result<()> {
        change()?;
        let deadline = Instant::now() + SETTLE;
        let mut since = Instant::now();
        // The nodes that do not list the change yet, asked together.
        let mut pending: Vec<&AmazonS3> = self.witnesses.iter().collect();
        loop {
            let listings = self.block_on(futures::future::try_join_all(
                pending.iter().map(|witness| self.list_keys(witness)),
            ))?;
            pending = pending
                .into_iter()
                .zip(listings)
                .filter(|(_, keys)| !done(keys))
                .map(|(witness, _)| witness)
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now > deadline {
                return Err(std::io::Error::other(format!(
                    "the store's listing did not show {what} within {SETTLE:?}"
                )));
            }
            if now - since > REDO_AFTER {
                change()?;
                since = now;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn block_on<T>(
        &self,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> std::io::Result<T> {
        self.runtime.block_on(call).map_err(std::io::Error::other)
    }
}

/// How long a replica may lag behind a change before it is made again.
const REDO_AFTER: Duration = Duration::from_secs(1);

impl Bucket {
    /// Writes `files` (16 at a time).
    fn write_all<'a>(
        &self,
        files: impl IntoIterator<Item = (&'a Key, &'a [u8])>,
    ) -> std::io::Result<()> {
        self.block_on(
            stream::iter(files)
                .map(|(key, content)| {
                    let payload = PutPayload::from(content.to_vec());
                    async move { self.store.put(key, payload).await.map(drop) }
                })
                .buffer_unordered(16)
                .try_for_each(|()| async { Ok(()) }),
        )
    }

    /// One `DELETE` per key, a few at a time: unlike a bulk delete (a
    /// `POST`), each is idempotent and retried by the client.
    fn delete_all(&self, keys: impl IntoIterator<Item = Key>) -> std::io::Result<()> {
        self.block_on(
            stream::iter(keys)
                .map(|key| async move { self.store.delete(&key).await })
                .buffer_unordered(16)
                .try_for_each(|()| async { Ok(()) }),
        )
    }

    /// Every key that any node lists under the prefix.
    fn listed_anywhere(&self) -> std::io::Result<Vec<Key>> {
        let listings = self.block_on(futures::future::try_join_all(
            self.witnesses.iter().map(|witness| self.list_keys(witness)),
        ))?;
        let mut keys: Vec<Key> = listings.into_iter().flatten().collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// While a fixture is laid out, the state it is bringing the prefix
    /// to (key → content): changes are made at once and recorded here,
    /// and [`FixtureSink::lay_out`] waits for them together. `None` at
    /// other times, when each change is waited for on its own.
    fn laying_out(&self) -> std::sync::MutexGuard<'_, Option<BTreeMap<Key, Vec<u8>>>> {
        self.layout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FixtureSink for Bucket {
    fn put(&self, name: &str, content: &[u8]) -> std::io::Result<()> {
        let key = self.key(name);
        let put = || self.write_all([(&key, content)]);
        if let Some(layout) = self.laying_out().as_mut() {
            put()?;
            layout.insert(key, content.to_vec());
            return Ok(());
        }
        self.settle(&format!("{key} written"), put, |keys| keys.contains(&key))
    }

    /// Every file written at once, then one wait until every replica
    /// lists them all: the 1,000-file fixture costs a few listings
    /// instead of three per file.
    fn put_many(&self, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
        let files: Vec<(Key, &[u8])> = files
            .iter()
            .map(|(name, content)| (self.key(name), content.as_slice()))
            .collect();
        let put_all = || self.write_all(files.iter().map(|(key, content)| (key, *content)));
        if let Some(layout) = self.laying_out().as_mut() {
            put_all()?;
            layout.extend(
                files
                    .iter()
                    .map(|(key, content)| (key.clone(), content.to_vec())),
            );
            return Ok(());
        }
        self.settle(
            &format!("{} files written", files.len()),
            put_all,
            |listed| files.iter().all(|(key, _)| listed.contains(key)),
        )
    }

    fn get(&self, name: &str) -> std::io::Result<Vec<u8>> {
        self.runtime
            .block_on(async { self.store.get(&self.key(name)).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(std::io::Error::other)
    }

    fn delete(&self, name: &str) -> std::io::Result<()> {
        let key = self.key(name);
        let delete = || self.delete_all([key.clone()]);
        if let Some(layout) = self.laying_out().as_mut() {
            delete()?;
            layout.remove(&key);
            return Ok(());
        }
        self.settle(&format!("{key} deleted"), delete, |keys| {
            !keys.contains(&key)
        })
    }

    /// Deletes every key that any node lists.
    fn clear(&self) -> std::io::Result<()> {
        let clear = || self.delete_all(self.listed_anywhere()?);
        if let Some(layout) = self.laying_out().as_mut() {
            clear()?;
            layout.clear();
            return Ok(());
        }
        self.settle("the prefix emptied", clear, |keys| keys.is_empty())
    }

    /// The case's `clear` and puts made at once, then one wait until every
    /// node lists exactly the fixture's keys: a wait per case instead of
    /// one per change (each about 50 ms here). If a node lags, the fixture
    /// is made again (keys no fixture wants deleted, its files rewritten).
    fn lay_out(&self, layout: &mut dyn FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
        *self.laying_out() = Some(BTreeMap::new());
        let laid = layout();
        let expected = self.laying_out().take().unwrap_or_default();
        laid?;
        let keys: Vec<Key> = expected.keys().cloned().collect();
        // The first call of `change` is the layout just made.
        let made = std::cell::Cell::new(true);
        let again = || {
            if made.replace(false) {
                return Ok(());
            }
            let unwanted = self.listed_anywhere()?;
            self.delete_all(
                unwanted
                    .into_iter()
                    .filter(|key| !expected.contains_key(key)),
            )?;
            self.write_all(
                expected
                    .iter()
                    .map(|(key, content)| (key, content.as_slice())),
            )
        };
        self.settle(
            &format!("the fixture's {} files laid out", keys.len()),
            again,
            |listed| {
                let mut listed = listed.to_vec();
                listed.sort();
                listed == keys
            },
        )
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
    let started = Instant::now();
    let results =
        hftp_check::run_with_sink(&config, bucket.clone(), &selection, |_| {}).expect("suite runs");
    let mut slowest: Vec<_> = results.iter().map(|r| (r.millis, r.id)).collect();
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    let case_millis: u64 = results.iter().map(|r| r.millis).sum();
    eprintln!(
        "{what}: the suite took {:.1?}: cases {:.1?} (slowest: {}), waits for the replicas {:.1?} \
         ({} changes)",
        started.elapsed(),
        Duration::from_millis(case_millis),
        slowest
            .iter()
            .take(3)
            .map(|(ms, id)| format!("{id} {ms} ms"))
            .collect::<Vec<_>>()
            .join(", "),
        Duration::from_micros(bucket.settling_micros.load(Ordering::Relaxed)),
        bucket.settled.load(Ordering::Relaxed),
    );
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
