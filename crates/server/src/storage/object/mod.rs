//! A bucket of an S3-compatible object store (AWS S3, Garage, MinIO, Ceph
//! RGW) as the served files, so that many stateless servers can serve the
//! same files.
//!
//! **What is served.** `s3://BUCKET/PREFIX` serves the objects whose key is
//! `PREFIX/NAME` for a valid HFTP `NAME`: keys with a further `/` below the
//! prefix, and keys that are not valid names, are neither listed nor
//! served, as subdirectories and odd names of a local directory.
//!
//! **Configuration** comes from the standard variables, read once at start:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` and
//! `AWS_ALLOW_HTTP=true` for a plain-http endpoint. Requests are
//! path-style (`ENDPOINT/BUCKET/KEY`), which every compatible store
//! accepts. No secret is ever logged: errors are passed through
//! [`redact`] before they leave this module.
//!
//! **Start-up checks.** A backend is made only when a source of
//! credentials is configured: the EC2 instance metadata service, the
//! fallback of `object_store`, only when asked for ([`credentials`]).
//! [`ObjectStorage::probe`] then asks the store once, bounded, whether the
//! bucket can be served ([`probe`]).
//!
//! **How calls run.** `object_store` is async, and so is this backend: a
//! loop driver (`poll`, `pool`, `uring`) or the `async` model hands it a
//! whole storage step ([`Storage::spawn_step`], [`steps`]), which becomes a
//! task on a small runtime owned by the backend and wakes the driver when
//! it ends: a call waiting for the store costs a task, not a thread, and
//! never queues behind calls for other objects. The blocking [`Storage`]
//! methods (the `threads` and `fork` models, whose threads may wait) run
//! the same async code with `block_on`. Calls for one object are bounded
//! ([`key_calls`]), so that a key the store never answers holds a few
//! calls, not every client. That runtime is created lazily, once per process, on the first call: the `fork` model
//! forks children from a parent that must stay single-threaded and never
//! touches storage, and a runtime's threads would not survive `fork()`
//! anyway. A runtime inherited from another process is leaked, never
//! dropped (dropping it would wait for threads that do not exist here).
//!
//! **Bounded waits.** Connect 2 s; one request 10 s; 3 retries of failed
//! requests (connection errors, 5xx, timeouts) with exponential backoff
//! from 100 ms to at most 1 s, none started after 15 s; and a hard bound of
//! [`CALL_TIMEOUT`] on each storage call. A store that cannot be reached is
//! `199` after at most that long, and the next request tries again: the
//! server serves again as soon as the store is back.
//!
//! **Reads** are pinned to the object's version: opening a range is one
//! ranged `GET` of the whole slice, whose answer says whether the object
//! exists, its size (`Content-Range`) and version (ETag), and whose body
//! is the slice, streamed (a `HEAD` only tells "out of range" from a
//! failure when that `GET` fails, and answers an empty slice alone). A
//! task on the backend's runtime reads the response
//! ahead of the connection, at most [`READ_AHEAD_BYTES`] (a semaphore of
//! bytes the reader gives back as it takes them), so the store
//! keeps sending while the connection writes to its client, and memory
//! stays bounded whatever the slice's size: when the client is slow, the
//! channel fills, the task stops reading and TCP holds the store back. A
//! response that breaks off (a store node dies) is asked again from the
//! byte where it stopped, with the same `If-Match`, up to [`BODY_RESUMES`]
//! times. An object replaced mid-slice is noticed by a `HEAD` run
//! alongside the stream every [`VERSION_CHECK_BYTES`] and once more before
//! the last bytes go out (a store may keep sending the old version, as
//! Garage does), or by the `412` a resumed `GET` gets: the read fails and
//! the connection is closed, as for a local file that shrinks.
//!
//! **Slices from a plain-http store** are read by hand instead, on a
//! connection of their own ([`by_hand`]): raw ones spliced from the
//! store's socket to the client's, never copied through user space;
//! base64 ones read from the socket straight into the block they are
//! encoded from. [`ObjectStorage::with_splice`] (`--s3-splice false`)
//! turns that off (every slice is then streamed as above), for a store
//! that refuses presigned requests.

use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hftp_proto::{FileName, Range};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
};
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

use super::{ListPage, RangeReader, StepDone, Storage, StorageError, StorageStep, Unlisted};

mod by_hand;
mod credentials;
pub mod floor;
mod http;
mod integrity;
mod key_calls;
mod probe;
mod steps;

use probe::EndpointSource;

/// Bytes handed to the connection per storage step: the body streams
/// continuously underneath, so this only sets how much the connection
/// gathers before it writes.
pub const BLOCK: usize = 1 << 20;

/// Bytes of a body read ahead of the connection: enough to keep the store
/// sending while the connection writes a block or two to its client.
pub const READ_AHEAD_BYTES: usize = 4 << 20;

/// Times a body that breaks off is asked again from where it stopped.
pub const BODY_RESUMES: u32 = 3;

/// Bytes of a body between two checks that the object is still the
/// version being sent (a `HEAD`, alongside the stream).
pub const VERSION_CHECK_BYTES: u64 = 8 << 20;

/// How long a block gathers a streamed body after its first bytes, at
/// most: past it, what has come goes to the client.
const GATHER: Duration = Duration::from_millis(100);

/// How long a block waits for the store's next bytes before what it has
/// goes to the client.
const LINGER: Duration = Duration::from_millis(5);

/// The least a resumed `GET` is given for its answer's head.
const MIN_RESUME_WAIT: Duration = Duration::from_millis(100);

/// The bound on the version check before a slice's last bytes: a store
/// whose `HEAD` stalls delays a slice by at most this.
pub const LAST_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Keys asked for in one `ListObjectsV2` page (the most S3 returns).
pub const PAGE_KEYS: usize = 1000;

/// The hard bound on one storage call, retries included, and on the wait
/// for the next bytes of a body.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The default bound on the time to the first byte of a store's answer
/// (`--s3-first-byte-timeout`): a wait for a free call for the object
/// included, retries included.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Worker threads of the backend's runtime: they only drive sockets.
const RUNTIME_THREADS: usize = 2;

/// Threads of the runtime that may block: they run the by-hand path's
/// socket calls ([`by_hand`]), one per slice being read from the store
/// (its opening call is bounded per key like any other).
const BLOCKING_THREADS: usize = 64;

/// `s3://BUCKET[/PREFIX]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's top level.
    pub prefix: String,
}

impl ObjectUrl {
    /// Parses `s3://BUCKET[/PREFIX][/]`.
    pub fn parse(url: &str) -> Result<ObjectUrl, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3://BUCKET[/PREFIX] URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket (s3://BUCKET[/PREFIX])"));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            match Path::parse(prefix) {
                Ok(p) if p.as_ref() == prefix => {}
                _ => return Err(format!("{url:?}: the prefix {prefix:?} is not a valid key prefix (empty segments, `.` or `..`)")),
            }
        }
        Ok(ObjectUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A bucket (and prefix) of an S3-compatible store.
#[derive(Clone)]
pub struct ObjectStorage {
    inner: Arc<Inner>,
}

struct Inner {
    url: ObjectUrl,
    /// `PREFIX/`, or empty.
    key_prefix: String,
    /// Configured once at start; built into a client once per process.
    builder: AmazonS3Builder,
    /// Credential values, replaced by `<redacted>` in every message.
    secrets: Vec<String>,
    /// Where the credentials come from.
    credentials: credentials::Source,
    /// The store's endpoint, as messages show it, and where it was set.
    endpoint: String,
    endpoint_source: EndpointSource,
    /// Whether slices may be read by hand, raw ones spliced ([`by_hand`]).
    splice: bool,
    /// Store calls in flight, per object.
    key_calls: key_calls::KeyCalls,
    /// How long a call waits for the first byte of the store's answer.
    first_byte: Duration,
    /// The low-speed floor of a body.
    low_speed: floor::LowSpeed,
    process: Mutex<Option<Arc<Process>>>,
}

/// What one process needs to make requests: a runtime and a client whose
/// connections belong to it.
struct Process {
    pid: u32,
    /// Shut down in the background when dropped (see the `Drop` impl).
    runtime: ManuallyDrop<tokio::runtime::Runtime>,
    store: AmazonS3,
}

/// The backend may be dropped from inside another runtime (the `async`
/// driver's, at shutdown), where dropping a runtime would block and tokio
/// panics. Shutting it down in the background never blocks: requests still
/// in flight are abandoned, as the server is exiting.
impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: `runtime` is taken once, here, and never used after.
        let runtime = unsafe { ManuallyDrop::take(&mut self.runtime) };
        runtime.shutdown_background();
    }
}

/// Variables that set the endpoint, the one `object_store` prefers first.
const ENDPOINT_VARIABLES: [&str; 3] = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"];

/// `AmazonS3Builder::from_env` less the variables that are set but empty:
/// an empty `AWS_ACCESS_KEY_ID=` line (a template of settings) is unset,
/// not an empty key.
fn settings_from_env() -> AmazonS3Builder {
    std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(key, value)| key.starts_with("AWS_") && !value.is_empty())
        .fold(AmazonS3Builder::new(), |builder, (key, value)| {
            match key.to_ascii_lowercase().parse() {
                Ok(config_key) => builder.with_config(config_key, value),
                Err(_) => builder,
            }
        })
}

impl ObjectStorage {
    /// A backend for `url`, configured from the `AWS_*` variables. Checks
    /// the configuration (not the store: it may come up later) and starts
    /// no thread, so it may be called before the `fork` model starts.
    /// Fails, with the variables to set, when no source of credentials is
    /// configured; the EC2 instance metadata service is one only if
    /// `instance_credentials` ([`credentials`]).
    pub fn from_env(url: ObjectUrl, instance_credentials: bool) -> Result<ObjectStorage, String> {
        let builder = settings_from_env();
        let source = credentials::source(&builder, instance_credentials)?;
        let secrets = [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ACCESS_KEY_ID",
        ]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .filter(|value| value.len() >= 4)
        .collect();
        let configured = builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        let endpoint_source = match &configured {
            Some(endpoint) => ENDPOINT_VARIABLES
                .into_iter()
                .find(|var| std::env::var(var).ok().as_ref() == Some(endpoint))
                .map_or(EndpointSource::Given, EndpointSource::Variable),
            None => EndpointSource::AwsDefault,
        };
        let endpoint = configured.unwrap_or_else(|| {
            let region = builder
                .get_config_value(&AmazonS3ConfigKey::Region)
                .unwrap_or_else(|| "us-east-1".into());
            format!("https://s3.{region}.amazonaws.com")
        });
        Self::with_builder(url, builder, secrets, source, (&endpoint, endpoint_source))
    }

    /// A backend for `url` with explicit settings (for tests and tools):
    /// the endpoint, the credentials, and whether plain http is allowed.
    pub fn with_credentials(
        url: ObjectUrl,
        endpoint: &str,
        region: &str,
        key_id: &str,
        secret: &str,
    ) -> Result<ObjectStorage, String> {
        let builder = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region(region)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_allow_http(endpoint.starts_with("http://"));
        Self::with_builder(
            url,
            builder,
            vec![key_id.to_string(), secret.to_string()],
            credentials::Source::Static,
            (endpoint, EndpointSource::Given),
        )
    }

    fn with_builder(
        url: ObjectUrl,
        builder: AmazonS3Builder,
        secrets: Vec<String>,
        credentials: credentials::Source,
        (endpoint, endpoint_source): (&str, EndpointSource),
    ) -> Result<ObjectStorage, String> {
        let builder = builder
            .with_bucket_name(&url.bucket)
            .with_virtual_hosted_style_request(false)
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                "2s",
            )
            // The client's own timeout covers a whole request, body
            // included, and reads as any broken body in its error: the
            // bounds that matter are ours (first byte, the low-speed floor
            // of a body), so this one is only a last resort.
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "300s")
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
            });
        // Building checks the settings; the client is built anew in each
        // process that serves (see the module docs).
        builder
            .clone()
            .build()
            .map_err(|e| redact(&format!("object store settings: {e}"), &secrets))?;
        let key_prefix = if url.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", url.prefix)
        };
        Ok(ObjectStorage {
            inner: Arc::new(Inner {
                url,
                key_prefix,
                builder,
                endpoint: shown_endpoint(endpoint, &secrets),
                secrets,
                credentials,
                endpoint_source,
                splice: true,
                key_calls: key_calls::KeyCalls::default(),
                first_byte: FIRST_BYTE_TIMEOUT,
                low_speed: floor::DEFAULT,
                process: Mutex::new(None),
            }),
        })
    }

    /// Whether slices from a plain-http endpoint are read by hand, raw ones
    /// spliced ([`by_hand`]; the default), or streamed through the S3
    /// client. Set
    /// once, before the storage is shared.
    pub fn with_splice(mut self, on: bool) -> ObjectStorage {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.splice = on,
            None => unreachable!("with_splice on a storage already shared"),
        }
        self
    }

    /// Bounds the time to the first byte of every store answer (a listing,
    /// a size, the opening of a slice), the wait for a free call for the
    /// object included. Set once, before the storage is shared.
    pub fn with_first_byte_timeout(mut self, limit: Duration) -> ObjectStorage {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.first_byte = limit,
            None => unreachable!("with_first_byte_timeout on a storage already shared"),
        }
        self
    }

    /// Sets the low-speed floor of a slice's body ([`floor`]). Set once,
    /// before the storage is shared.
    pub fn with_low_speed(mut self, low_speed: floor::LowSpeed) -> ObjectStorage {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.low_speed = low_speed,
            None => unreachable!("with_low_speed on a storage already shared"),
        }
        self
    }

    pub fn url(&self) -> &ObjectUrl {
        &self.inner.url
    }

    /// The object key of a served name.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.inner.key_prefix)
    }
}

/// Why a call to the store failed.
enum CallError {
    Store(object_store::Error),
    TimedOut,
    /// A body sent nothing for this long ([`floor`]).
    Stalled(Duration),
    /// A body came slower than the floor ([`floor`]).
    TooSlow(String),
    /// The runtime or client could not be made.
    Setup(StorageError),
}

impl Inner {
    /// The region requests are signed for (`us-east-1` unless set).
    fn region(&self) -> String {
        self.builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".into())
    }

    fn process(&self) -> Result<Arc<Process>, StorageError> {
        let pid = std::process::id();
        let mut slot = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(process) = slot.as_ref().filter(|p| p.pid == pid) {
            return Ok(Arc::clone(process));
        }
        if let Some(inherited) = slot.take() {
            // Its runtime's threads stayed in the parent: never drop it.
            std::mem::forget(inherited);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("hftp-object-store")
            .enable_all()
            .build()?;
        let store = self.builder.clone().build().map_err(|e| self.failure(&e))?;
        let process = Arc::new(Process {
            pid,
            runtime: ManuallyDrop::new(runtime),
            store,
        });
        *slot = Some(Arc::clone(&process));
        Ok(process)
    }

    /// Runs `future` to its end on this process's runtime, for a caller
    /// on a thread that may block (never one of the runtime's own).
    fn block_on<T>(
        &self,
        future: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        self.process()?.runtime.block_on(future)
    }

    /// Runs `call` against this process's client, bounded by `limit`.
    async fn call_within<T, F>(
        &self,
        limit: Duration,
        about: &str,
        call: impl FnOnce(AmazonS3) -> F,
    ) -> Result<T, CallError>
    where
        F: Future<Output = Result<T, object_store::Error>>,
    {
        let process = self.process().map_err(CallError::Setup)?;
        let call = call(process.store.clone()).instrument(store_call(about));
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(CallError::Store(e)),
            Err(_) => Err(CallError::TimedOut),
        }
    }

    /// Waits, at most `limit`, until `path` has fewer than
    /// [`key_calls::CALLS_PER_KEY`] calls in flight.
    async fn key_permit(
        &self,
        path: &Path,
        limit: Duration,
    ) -> Result<key_calls::KeyPermit, StorageError> {
        self.key_calls
            .acquire(path.as_ref(), limit)
            .await
            .ok_or_else(|| {
                StorageError::Unavailable(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "object store {}: {} calls for object {path} already in flight, none ended within {limit:?}",
                        self.url,
                        key_calls::CALLS_PER_KEY
                    ),
                ))
            })
    }

    fn storage_error(&self, e: CallError) -> StorageError {
        match e {
            CallError::Store(object_store::Error::NotFound { .. }) => StorageError::NotFound,
            CallError::Store(e) => self.failure(&e),
            CallError::TimedOut => StorageError::Unavailable(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "object store {}: no answer within {:?} (--s3-first-byte-timeout)",
                    self.url, self.first_byte
                ),
            )),
            CallError::Stalled(window) => StorageError::Unavailable(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "object store {}: the answer stalled, nothing for {window:?} (--s3-low-speed-time)",
                    self.url
                ),
            )),
            CallError::TooSlow(why) => StorageError::Unavailable(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("object store {}: {why}", self.url),
            )),
            CallError::Setup(e) => e,
        }
    }

    /// An error of the store as `Unavailable`, its message redacted.
    fn failure(&self, e: &object_store::Error) -> StorageError {
        StorageError::Unavailable(io::Error::other(redact(
            &format!("object store {}: {}", self.url, causes(e)),
            &self.secrets,
        )))
    }
}

/// An error and its sources, each once: "request or response body error"
/// alone does not tell a reset from a close or a timeout; its sources do
/// ("connection reset by peer", "unexpected EOF", ...).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A failure of the store, saying which object (and from which byte) it
/// was about, for the log line of the `199` it becomes.
fn about(e: StorageError, key: &str, offset: Option<u64>) -> StorageError {
    match e {
        StorageError::Unavailable(e) => {
            let at = offset.map_or(String::new(), |o| format!(" from byte {o}"));
            StorageError::Unavailable(io::Error::new(e.kind(), format!("{e} (object {key}{at})")))
        }
        other => other,
    }
}

/// `endpoint` as a message may show it: without a user or password in it
/// (`http://user:pass@host`), [`redact`]ed.
fn shown_endpoint(endpoint: &str, secrets: &[String]) -> String {
    let without_user = match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => endpoint.to_string(),
            }
        }
        None => endpoint.to_string(),
    };
    redact(&without_user, secrets)
}

/// `message` with every credential value replaced and every URL's query
/// string dropped (a presigned URL carries its signature and credential
/// there), so that it can be logged.
pub fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        let url_end = rest[at..]
            .find(|c: char| c.is_whitespace() || "\"'<>()".contains(c))
            .map_or(rest.len(), |p| at + p);
        let upto_url_end = &rest[..url_end];
        match upto_url_end[at..].find('?') {
            Some(q) => {
                out.push_str(&upto_url_end[..at + q]);
                out.push_str("?<query redacted>");
            }
            None => out.push_str(upto_url_end),
        }
        rest = &rest[url_end..];
    }
    out.push_str(rest);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), "<redacted>");
    }
    out
}

impl Storage for ObjectStorage {
    fn backend(&self) -> &'static str {
        "s3"
    }

    fn list_page(&self, cursor: Option<&str>) -> Result<ListPage, StorageError> {
        self.inner.block_on(self.list_page_async(cursor))
    }

    fn size(&self, name: &FileName) -> Result<u64, StorageError> {
        self.inner.block_on(self.size_async(name))
    }

    fn open_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        self.inner
            .block_on(self.open_by_hand_async(name, range, false))
    }

    fn open_raw_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        self.inner
            .block_on(self.open_by_hand_async(name, range, true))
    }

    fn may_block(&self) -> bool {
        true
    }

    fn spawns_steps(&self) -> bool {
        true
    }

    fn spawn_step(&self, mut step: StorageStep, done: StepDone) {
        match self.inner.process() {
            Ok(process) => {
                let this = self.clone();
                if steps::blocks(&mut step) {
                    // Straight to a blocking thread: no task in between,
                    // two thread hand-offs fewer per step.
                    let reply = steps::ReplyOnce::new(done, &step);
                    process
                        .runtime
                        .spawn_blocking(move || reply.send(step.execute(&this)));
                } else {
                    process
                        .runtime
                        .spawn(async move { done(this.run_step(step).await) });
                }
            }
            // No runtime: the step fails at once, here.
            Err(_) => done(step.execute(self)),
        }
    }
}

impl ObjectStorage {
    async fn list_page_async(&self, cursor: Option<&str>) -> Result<ListPage, StorageError> {
        let prefix = &self.inner.key_prefix;
        let started = Instant::now();
        let limit = self.inner.first_byte;
        let mut retries = 0;
        // A page whose answer breaks off (a node dies mid-body) is asked
        // again, as a slice is, within the same first-byte bound.
        let result = loop {
            let options = PaginatedListOptions {
                delimiter: Some("/".into()),
                max_keys: Some(PAGE_KEYS),
                page_token: cursor.map(str::to_string),
                ..Default::default()
            };
            let left = limit.saturating_sub(started.elapsed());
            let failure = match self
                .inner
                .call_within(
                    left,
                    &format!("listing of {prefix:?}"),
                    |store| async move {
                        let prefix = (!prefix.is_empty()).then_some(prefix.as_str());
                        store.list_paginated(prefix, options).await
                    },
                )
                .await
            {
                Ok(result) => break result,
                Err(CallError::Store(e)) if !matches!(e, object_store::Error::NotFound { .. }) => e,
                Err(e) => return Err(self.inner.storage_error(e)),
            };
            if retries >= BODY_RESUMES || started.elapsed() >= limit {
                return Err(self.inner.failure(&failure));
            }
            retries += 1;
            tracing::warn!(
                retry = retries,
                "the store's listing failed ({}): asking again",
                redact(&causes(&failure), &self.inner.secrets)
            );
        };
        let mut unlisted = Unlisted::default();
        let mut names: Vec<String> = result
            .result
            .objects
            .into_iter()
            .filter_map(|object| {
                let name = object.location.as_ref().strip_prefix(prefix.as_str())?;
                if FileName::new(name).is_err() {
                    unlisted.note(name.as_bytes());
                    return None;
                }
                Some(name.to_string())
            })
            .collect();
        // S3 lists in byte order already; a compatible store might not.
        names.sort_unstable();
        Ok(ListPage {
            names,
            next: result.page_token,
            unlisted,
        })
    }

    async fn size_async(&self, name: &FileName) -> Result<u64, StorageError> {
        self.size_of(name)
            .await
            .map_err(|e| about(e, &self.key(name.as_str()), None))
    }

    async fn size_of(&self, name: &FileName) -> Result<u64, StorageError> {
        let path = self.path(name)?;
        let started = Instant::now();
        let limit = self.inner.first_byte;
        let _permit = self.inner.key_permit(&path, limit).await?;
        let left = limit.saturating_sub(started.elapsed());
        let head_path = path.clone();
        self.inner
            .call_within(left, path.as_ref(), |store| async move {
                store.head(&head_path).await
            })
            .await
            .map(|meta| meta.size)
            .map_err(|e| self.inner.storage_error(e))
    }

    async fn open_range_async(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        self.open_streamed(name, range)
            .await
            .map_err(|e| about(e, &self.key(name.as_str()), Some(range.offset)))
    }

    async fn open_streamed(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        let path = self.path(name)?;
        let started = Instant::now();
        let limit = self.inner.first_byte;
        let permit = self.inner.key_permit(&path, limit).await?;
        let left = limit.saturating_sub(started.elapsed());
        let (e_tag, opened) = match range.end().filter(|_| range.size > 0) {
            // One round trip: the ranged GET says whether the object
            // exists, how long it is (Content-Range) and which version it
            // is (ETag), and its body is the slice.
            Some(end) => self.get_range(left, &path, range, end).await?,
            // Nothing to GET (or no such range): the HEAD decides.
            None => (self.head_range(left, &path, range).await?, None),
        };
        drop(permit);
        if e_tag.is_none() {
            tracing::debug!(%name, "object has no ETag: its slices are not pinned to a version");
        }
        let whole = opened.as_ref().is_some_and(|(_, whole)| *whole);
        let opened = opened.map(|(body, _)| body);
        let integrity = e_tag
            .as_deref()
            .filter(|_| whole)
            .and_then(integrity::Whole::for_e_tag);
        Ok(Box::new(ObjectRange {
            storage: self.clone(),
            name: name.clone(),
            path,
            e_tag,
            pos: range.offset,
            end: range.offset + range.size,
            opened,
            body: None,
            budget: Arc::new(Semaphore::new(READ_AHEAD_BYTES)),
            pending: Bytes::new(),
            failed: None,
            resumes: 0,
            integrity,
            last_byte: Instant::now(),
            deferred: None,
        }))
    }

    /// Opens `range` with a `GET` of its own, sent and read by hand
    /// ([`by_hand`]; with a pipe when `raw`), or streamed through
    /// `object_store` when the slice cannot go that way. Its blocking
    /// socket calls run on one of the runtime's blocking threads, once this
    /// object has a free call.
    async fn open_by_hand_async(
        &self,
        name: &FileName,
        range: Range,
        raw: bool,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        if !self.splices(range) {
            return self.open_range_async(name, range).await;
        }
        let at = |e| about(e, &self.key(name.as_str()), Some(range.offset));
        let path = self.path(name)?;
        let started = Instant::now();
        let permit = self
            .inner
            .key_permit(&path, self.inner.first_byte)
            .await
            .map_err(at)?;
        let (this, blocking_name) = (self.clone(), name.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let opened = by_hand::open(&this, &blocking_name, &path, range, started.elapsed(), raw);
            drop(permit);
            opened
        })
        .await
        .map_err(|e| StorageError::Unavailable(io::Error::other(format!("storage task: {e}"))))?;
        match self.by_hand_or_not(name, opened).map_err(at)? {
            Some(reader) => Ok(reader),
            None => self.open_range_async(name, range).await,
        }
    }

    /// Whether `range` goes the hand-sent way ([`by_hand`]).
    fn splices(&self, range: Range) -> bool {
        self.inner.splice && range.size > 0 && range.end().is_some()
    }

    /// The by-hand reader, an error, or `None` when the slice is best
    /// streamed instead.
    fn by_hand_or_not(
        &self,
        name: &FileName,
        opened: by_hand::Opened,
    ) -> Result<Option<Box<dyn RangeReader>>, StorageError> {
        match opened {
            by_hand::Opened::Spliced(reader) => Ok(Some(reader)),
            by_hand::Opened::NotFound => Err(StorageError::NotFound),
            by_hand::Opened::TimedOut(e) => Err(StorageError::Unavailable(e)),
            by_hand::Opened::Elsewhere(why) => {
                tracing::debug!(%name, "slice not read by hand ({why}): streamed instead");
                Ok(None)
            }
        }
    }
}

impl ObjectStorage {
    fn path(&self, name: &FileName) -> Result<Path, StorageError> {
        Path::parse(self.key(name.as_str())).map_err(|_| StorageError::NotFound)
    }

    /// The object's ETag once a `HEAD`, bounded by `limit`, showed `range`
    /// lies inside it.
    async fn head_range(
        &self,
        limit: Duration,
        path: &Path,
        range: Range,
    ) -> Result<Option<String>, StorageError> {
        let head_path = path.clone();
        let meta = self
            .inner
            .call_within(limit, path.as_ref(), |store| async move {
                store.head(&head_path).await
            })
            .await
            .map_err(|e| self.inner.storage_error(e))?;
        if !range.fits(meta.size) {
            return Err(StorageError::OutOfRange);
        }
        Ok(meta.e_tag)
    }

    /// Opens `range` (ending at `end`) with its ranged `GET`: the object's
    /// ETag and the answer's body. A store answers a range that starts past
    /// the end with `416`, and an object shorter than `end` with fewer
    /// bytes; anything but success or `404` is then told apart by a `HEAD`
    /// (out of range, or the store's own failure), in what is left of
    /// `limit`: the open is one storage call, bounded as one.
    async fn get_range(
        &self,
        limit: Duration,
        path: &Path,
        range: Range,
        end: u64,
    ) -> Result<(Option<String>, Option<(Body, bool)>), StorageError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.offset..end)),
            ..Default::default()
        };
        let get_path = path.clone();
        let started = Instant::now();
        let failure = match self
            .inner
            .call_within(limit, path.as_ref(), |store| async move {
                store.get_opts(&get_path, options).await
            })
            .await
        {
            Ok(answer) if answer.range.end == end => {
                let whole = range.offset == 0 && end == answer.meta.size;
                let e_tag = answer.meta.e_tag.clone();
                return Ok((e_tag, Some((answer.into_stream(), whole))));
            }
            Ok(_) => return Err(StorageError::OutOfRange),
            Err(CallError::Store(object_store::Error::NotFound { .. })) => {
                return Err(StorageError::NotFound)
            }
            // No answer in time: nothing is left to ask with.
            Err(e @ (CallError::TimedOut | CallError::Setup(_))) => {
                return Err(self.inner.storage_error(e))
            }
            Err(e) => e,
        };
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(self.inner.storage_error(failure));
        }
        self.head_range(left, path, range).await?;
        Err(self.inner.storage_error(failure))
    }
}

/// The body of a `GET`, as `object_store` streams it.
type Body = futures::stream::BoxStream<'static, object_store::Result<Bytes>>;

/// A range of one version of an object, streamed by one ranged `GET`
/// (again from where it stopped if it breaks off).
struct ObjectRange {
    storage: ObjectStorage,
    name: FileName,
    path: Path,
    e_tag: Option<String>,
    pos: u64,
    end: u64,
    /// The body of the `GET` that opened the range, until a task reads it.
    opened: Option<Body>,
    /// The body being read ahead, chunk by chunk, by a task of the runtime.
    body: Option<mpsc::UnboundedReceiver<Result<Bytes, CallError>>>,
    /// Bytes the task may still read ahead; given back as chunks are taken.
    budget: Arc<Semaphore>,
    /// What is left of the last chunk received.
    pending: Bytes,
    /// A failure of the body taken from the channel early, for the next
    /// read to report.
    failed: Option<CallError>,
    resumes: u32,
    /// The MD5 of the bytes handed out, for a whole object whose ETag is
    /// one ([`integrity`]).
    integrity: Option<integrity::Whole>,
    /// When the last bytes came from the store (or the range opened).
    last_byte: Instant,
    /// The failure that ended a block gathered before it: the next read's.
    deferred: Option<io::Error>,
}

impl ObjectRange {
    /// Asks for the rest of the range; a task streams the answer into the
    /// returned channel (and stops when the channel is dropped).
    fn request_rest(
        &mut self,
    ) -> Result<mpsc::UnboundedReceiver<Result<Bytes, CallError>>, StorageError> {
        let process = self.storage.inner.process()?;
        let start = match self.opened.take() {
            Some(body) => Start::Answered(body),
            None => Start::Request(GetOptions {
                if_match: self.e_tag.clone(),
                range: Some(GetRange::Bounded(self.pos..self.end)),
                ..Default::default()
            }),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // A fresh budget; closing the old one ends a task still waiting on
        // it (what it held is not given back).
        self.budget.close();
        self.budget = Arc::new(Semaphore::new(READ_AHEAD_BYTES));
        let store = process.store.clone();
        let path = self.path.clone();
        let e_tag = self.e_tag.clone();
        let budget = Arc::clone(&self.budget);
        // A resume's GET gets what is left of the client's window without
        // a byte, so that no resume makes it wait longer than that.
        let inner = &self.storage.inner;
        let window_left = inner
            .low_speed
            .time
            .saturating_sub(self.last_byte.elapsed());
        let head_within = if self.resumes == 0 {
            inner.first_byte
        } else {
            inner.first_byte.min(window_left).max(MIN_RESUME_WAIT)
        };
        let bounds = (head_within, inner.low_speed);
        process
            .runtime
            .spawn(stream_body(store, path, start, e_tag, budget, bounds, tx));
        Ok(rx)
    }

    /// The next chunk of the body (`None`: it ended), waiting at most
    /// [`CALL_TIMEOUT`] for it.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, CallError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.body.is_none() {
            self.body = Some(self.request_rest().map_err(CallError::Setup)?);
        }
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        // What has arrived is taken at once: a timer (and a wake-up from
        // the task) only when the reader caught up.
        let next = match body.try_recv() {
            Ok(item) => Ok(Some(item)),
            Err(mpsc::error::TryRecvError::Disconnected) => Ok(None),
            Err(mpsc::error::TryRecvError::Empty) => {
                // The task ends a stalled body itself; this only bounds a
                // task that could not (its GET is bounded by first_byte).
                let inner = &self.storage.inner;
                let backstop = inner.first_byte + inner.low_speed.time + CALL_TIMEOUT;
                tokio::time::timeout(backstop, body.recv()).await
            }
        };
        match next {
            Ok(Some(Ok(chunk))) => {
                self.budget.add_permits(permits(&chunk) as usize);
                Ok(Some(chunk))
            }
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Ok(None),
            Err(_) => Err(CallError::TimedOut),
        }
    }

    /// A failure of the body as the connection sees it.
    fn read_error(&self, e: CallError) -> io::Error {
        match e {
            CallError::Store(object_store::Error::Precondition { .. }) => {
                io::Error::other(format!(
                    "object {} was replaced while its slice was being sent (ETag changed)",
                    self.name
                ))
            }
            CallError::Store(object_store::Error::NotFound { .. }) => io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "object {} was deleted while its slice was being sent",
                    self.name
                ),
            ),
            e => {
                let key = self.storage.key(self.name.as_str());
                match about(self.storage.inner.storage_error(e), &key, Some(self.pos)) {
                    StorageError::Unavailable(e) => e,
                    other => io::Error::other(other.to_string()),
                }
            }
        }
    }
}

/// Whether the object at `path` is still version `e_tag`.
enum Version {
    Same,
    Replaced,
    Deleted,
    /// The check itself failed: the slice goes on (the stream would fail
    /// on its own if the store were gone).
    Unknown,
}

/// The check before a slice's last bytes leave: bounded by
/// [`LAST_CHECK_TIMEOUT`], after which the version is [`Version::Unknown`]
/// and the slice ends as it began (the stream itself was pinned to the
/// ETag by the `GET`'s answer, and resumes by `If-Match`).
/// The span a store call runs in: the S3 client's own log lines (its
/// retries: "Encountered server error with status 503, backing off ...")
/// then name the object (or listing) they are about.
fn store_call(about: &str) -> tracing::Span {
    tracing::info_span!("s3", object = %about)
}

async fn last_version(store: &AmazonS3, path: &Path, e_tag: &str) -> Version {
    tokio::time::timeout(LAST_CHECK_TIMEOUT, version(store, path, e_tag))
        .await
        .unwrap_or(Version::Unknown)
}

async fn version(store: &AmazonS3, path: &Path, e_tag: &str) -> Version {
    match store.head(path).instrument(store_call(path.as_ref())).await {
        Ok(meta) if meta.e_tag.as_deref() == Some(e_tag) => Version::Same,
        Ok(_) => Version::Replaced,
        Err(object_store::Error::NotFound { .. }) => Version::Deleted,
        Err(_) => Version::Unknown,
    }
}

/// Where a body comes from: the answer that opened the range, or a new
/// `GET` of the rest (a resume).
enum Start {
    Answered(Body),
    Request(GetOptions),
}

/// Streams one ranged `GET` into `tx`, chunk by chunk, until the range
/// ends or `tx` is dropped. A store may go on sending an old version after
/// the object was replaced (Garage does), so every
/// [`VERSION_CHECK_BYTES`] a `HEAD` runs alongside, and the last chunk is
/// held back until a final one passes: a slice of more than that is
/// complete only if the object was the same version when its last byte
/// was read. (A shorter one, read in a few milliseconds, is sent whole
/// from the version it began with, without the extra round trip.)
async fn stream_body(
    store: AmazonS3,
    path: Path,
    start: Start,
    e_tag: Option<String>,
    budget: Arc<Semaphore>,
    (first_byte, low_speed): (Duration, floor::LowSpeed),
    tx: mpsc::UnboundedSender<Result<Bytes, CallError>>,
) {
    // Unbounded channel, bounded bytes: each chunk is paid for first.
    let send = |item: Result<Bytes, CallError>| tx.send(item).is_ok();
    let changed = |version: Version| match version {
        Version::Replaced => Some(object_store::Error::Precondition {
            path: path.to_string(),
            source: "the object was replaced".into(),
        }),
        Version::Deleted => Some(object_store::Error::NotFound {
            path: path.to_string(),
            source: "the object was deleted".into(),
        }),
        Version::Same | Version::Unknown => None,
    };
    let mut body = match start {
        Start::Answered(body) => body,
        Start::Request(options) => {
            let get = store
                .get_opts(&path, options)
                .instrument(store_call(path.as_ref()));
            match tokio::time::timeout(first_byte, get).await {
                Ok(Ok(answer)) => answer.into_stream(),
                Ok(Err(e)) => {
                    send(Err(CallError::Store(e)));
                    return;
                }
                Err(_) => {
                    send(Err(CallError::TimedOut));
                    return;
                }
            }
        }
    };
    let mut held: Option<Bytes> = None;
    let mut unchecked = 0u64;
    let mut total = 0u64;
    let mut check: Option<tokio::task::JoinHandle<Version>> = None;
    let mut speed = floor::SpeedFloor::new(low_speed);
    let mut streaming = false;
    loop {
        // Only the wait for the store counts against the floor: the wait
        // for budget below is the client's. The first bytes are the
        // first-byte bound's to wait for; the floor starts after them.
        let asked = Instant::now();
        let limit = if streaming {
            speed.stall_limit()
        } else {
            first_byte
        };
        let chunk = match tokio::time::timeout(limit, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => {
                send(Err(CallError::Store(e)));
                return;
            }
            Ok(None) => break,
            Err(_) if streaming => {
                send(Err(CallError::Stalled(limit)));
                return;
            }
            Err(_) => {
                send(Err(CallError::TimedOut));
                return;
            }
        };
        if streaming {
            if let Err(why) = speed.record(asked.elapsed(), chunk.len() as u64) {
                send(Err(CallError::TooSlow(why)));
                return;
            }
        }
        streaming = true;
        if check.as_ref().is_some_and(|c| c.is_finished()) {
            if let Some(done) = check.take() {
                if let Some(e) = changed(done.await.unwrap_or(Version::Unknown)) {
                    send(Err(CallError::Store(e)));
                    return;
                }
            }
        }
        unchecked += chunk.len() as u64;
        total += chunk.len() as u64;
        if let (Some(tag), None) = (&e_tag, &check) {
            if unchecked >= VERSION_CHECK_BYTES {
                unchecked = 0;
                let (store, path, tag) = (store.clone(), path.clone(), tag.clone());
                check = Some(tokio::spawn(
                    async move { version(&store, &path, &tag).await },
                ));
            }
        }
        // Paid for before it is held, so the bound counts it too.
        match budget.acquire_many(permits(&chunk)).await {
            Ok(paid) => paid.forget(),
            Err(_) => return,
        }
        if let Some(previous) = held.replace(chunk) {
            if !send(Ok(previous)) {
                return;
            }
        }
    }
    if let Some(tag) = e_tag.as_ref().filter(|_| total > VERSION_CHECK_BYTES) {
        if let Some(e) = changed(last_version(&store, &path, tag).await) {
            send(Err(CallError::Store(e)));
            return;
        }
    }
    if let Some(last) = held {
        send(Ok(last));
    }
}

/// What a chunk costs of the read-ahead budget (a chunk larger than the
/// whole budget costs all of it, and waits for the reader to catch up).
fn permits(chunk: &Bytes) -> u32 {
    chunk.len().min(READ_AHEAD_BYTES) as u32
}

impl Drop for ObjectRange {
    /// Ends the task streaming the body, even one waiting for budget.
    fn drop(&mut self) {
        self.budget.close();
    }
}

impl ObjectRange {
    /// Copies what it has of the body, at most one chunk, into `buf`,
    /// waiting (as a task) for the next chunk when it has none.
    async fn read_async(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let want = (buf.len() as u64).min(self.end - self.pos) as usize;
        if want == 0 {
            return Ok(0);
        }
        while self.pending.is_empty() {
            let failure = match self.next_chunk().await {
                Ok(Some(chunk)) => {
                    self.pending = chunk;
                    continue;
                }
                // The answer ended before the range did.
                Ok(None) => CallError::Store(object_store::Error::Generic {
                    store: "S3",
                    source: "the answer ended before the range did".into(),
                }),
                Err(e) => e,
            };
            self.body = None;
            // A stalled or slow store has had its window: asking again
            // would keep the client waiting longer than that.
            let final_failure = matches!(
                failure,
                CallError::Store(
                    object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }
                ) | CallError::Setup(_)
                    | CallError::Stalled(_)
                    | CallError::TooSlow(_)
                    | CallError::TimedOut
            );
            // Resumes end too once the client has gone a whole low-speed
            // window without a byte: the bound is on its wait, not on
            // the number of tries.
            let waited_out = self.last_byte.elapsed() >= self.storage.inner.low_speed.time;
            if final_failure || waited_out || self.resumes >= BODY_RESUMES {
                return Err(self.read_error(failure));
            }
            self.resumes += 1;
            let why = self.read_error(failure);
            tracing::warn!(
                object = %self.name,
                at = self.pos,
                resume = self.resumes,
                "the store's answer broke off ({why}): asking again from where it stopped"
            );
        }
        self.take_pending(buf, want)
    }

    fn take_pending(&mut self, buf: &mut [u8], want: usize) -> io::Result<usize> {
        let take = want.min(self.pending.len());
        buf[..take].copy_from_slice(&self.pending.split_to(take));
        self.pos += take as u64;
        if take > 0 {
            self.last_byte = Instant::now();
        }
        if let Some(whole) = self.integrity.as_mut() {
            whole.update(&buf[..take]);
            if self.pos == self.end {
                let key = self.storage.key(self.name.as_str());
                let result = self.integrity.take().map_or(Ok(()), |w| w.verify(&key));
                if let Err(e) = result {
                    tracing::error!(object = %key, "{e}");
                    return Err(e);
                }
            }
        }
        Ok(take)
    }

    /// This process's runtime and client, for a blocking read.
    fn process(&self) -> io::Result<Arc<Process>> {
        self.storage.inner.process().map_err(|e| match e {
            StorageError::Unavailable(e) => e,
            other => io::Error::other(other.to_string()),
        })
    }

    /// [`RangeReader::read_block`]: waits for the first bytes, then takes
    /// whatever else has arrived, up to `want`.
    async fn read_block_async(&mut self, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
        buf.resize(want, 0);
        if want == 0 {
            return Ok(());
        }
        let mut got = match self.read_async(buf).await? {
            0 => return Err(super::shrank()),
            n => n,
        };
        // Then more, while the store keeps sending: a whole block from a
        // store that streams (few steps, few wake-ups), what has come so
        // far from one that trickles or stops.
        let first = Instant::now();
        while got < want {
            if let Some(chunk) = self.ready_chunk() {
                self.pending = chunk;
                got += self.take_pending(&mut buf[got..], want - got)?;
                continue;
            }
            let left = GATHER.saturating_sub(first.elapsed());
            if left.is_zero() {
                break;
            }
            // `read_async` only awaits the channel, which a timeout may
            // cancel without losing anything.
            match tokio::time::timeout(left.min(LINGER), self.read_async(&mut buf[got..want])).await
            {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => got += n,
                // What was gathered goes out first; the next read fails.
                Ok(Err(e)) => {
                    self.deferred = Some(e);
                    break;
                }
            }
        }
        let mut keep = super::partial_block(got, want);
        while got < keep {
            match self.read_async(&mut buf[got..keep]).await {
                Ok(0) => return Err(super::shrank()),
                Ok(n) => got += n,
                // The body failed a byte or two short of a whole group: the
                // slice ends with this block anyway, so the whole groups go
                // out and the failure comes next.
                Err(e) if got >= 3 => {
                    keep = got - got % 3;
                    self.deferred = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        buf.truncate(keep);
        Ok(())
    }

    /// A chunk that has already arrived, taken without waiting (errors and
    /// the end are left for [`ObjectRange::read_async`] to find).
    fn ready_chunk(&mut self) -> Option<Bytes> {
        if !self.pending.is_empty() {
            return Some(std::mem::take(&mut self.pending));
        }
        let body = self.body.as_mut()?;
        match body.try_recv() {
            Ok(Ok(chunk)) => {
                self.budget.add_permits(permits(&chunk) as usize);
                Some(chunk)
            }
            Ok(Err(e)) => {
                // Reported by the next read, in order.
                self.failed = Some(e);
                None
            }
            Err(_) => None,
        }
    }
}

impl RangeReader for ObjectRange {
    /// Copies what it has of the body, at most one chunk, into `buf`;
    /// enters the runtime only to wait for the next chunk.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.end - self.pos) as usize;
        if want > 0 && !self.pending.is_empty() {
            return self.take_pending(buf, want);
        }
        let process = self.process()?;
        process.runtime.block_on(self.read_async(buf))
    }

    fn read_block(&mut self, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
        let process = self.process()?;
        process.runtime.block_on(self.read_block_async(buf, want))
    }

    fn block_size(&self) -> usize {
        BLOCK
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_an_optional_prefix() {
        let url = |bucket: &str, prefix: &str| ObjectUrl {
            bucket: bucket.into(),
            prefix: prefix.into(),
        };
        assert_eq!(ObjectUrl::parse("s3://b").unwrap(), url("b", ""));
        assert_eq!(ObjectUrl::parse("s3://b/").unwrap(), url("b", ""));
        assert_eq!(ObjectUrl::parse("s3://b/p/q/").unwrap(), url("b", "p/q"));
        assert_eq!(
            ObjectUrl::parse("s3://b/p/q").unwrap().to_string(),
            "s3://b/p/q"
        );
        for bad in [
            "b/p",
            "s3://",
            "s3:///p",
            "file:///x",
            "s3://b/p//q",
            "s3://b/../x",
        ] {
            let err = ObjectUrl::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn messages_lose_credentials_and_query_strings() {
        let secrets = vec![
            "GK31c2f218a2e44f485b94239e".to_string(),
            "s3cr3t-value".to_string(),
        ];
        let message = "Error performing GET http://127.0.0.1:3900/bucket/key?X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F&X-Amz-Signature=abc in 1s - \
                       <Error><Message>No such key: GK31c2f218a2e44f485b94239e secret s3cr3t-value</Message></Error> (https://host/path?token=t)";
        let clean = redact(message, &secrets);
        for leaked in [
            "GK31c2f218a2e44f485b94239e",
            "s3cr3t-value",
            "X-Amz-Signature",
            "abc in",
            "token=t",
        ] {
            assert!(!clean.contains(leaked), "{leaked:?} leaked: {clean}");
        }
        assert!(
            clean.contains("http://127.0.0.1:3900/bucket/key?<query redacted>"),
            "{clean}"
        );
        assert!(clean.contains("No such key: <redacted>"), "{clean}");
        assert!(
            clean.contains("https://host/path?<query redacted>"),
            "{clean}"
        );
        // Nothing else changes.
        assert_eq!(redact("plain words? yes", &secrets), "plain words? yes");
    }

    #[test]
    fn a_store_that_cannot_be_reached_is_unavailable_with_the_cause() {
        // A port that was just free on loopback: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = ObjectStorage::with_credentials(
            ObjectUrl::parse("s3://bucket/prefix").unwrap(),
            &format!("http://127.0.0.1:{port}"),
            "garage",
            "GKkeyidkeyid",
            "secretsecretsecret",
        )
        .unwrap();
        match storage.size(&FileName::new("x").unwrap()) {
            Err(StorageError::Unavailable(e)) => {
                let message = e.to_string();
                assert!(message.contains("s3://bucket/prefix"), "{message}");
                assert!(!message.contains("secretsecretsecret"), "{message}");
                assert!(!message.contains("GKkeyidkeyid"), "{message}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
}
