//! The start-up check of a bucket: one bounded `LIST` that tells, before a
//! client is served, whether serving the bucket can work at all.
//!
//! **Why.** A server whose store cannot be reached, whose bucket does not
//! exist or whose key is refused starts fine and then answers `199` to
//! every request, the cause buried in a log line per request. `hftp serve`
//! runs [`ObjectStorage::probe`] once, before it binds its port (so before
//! any driver exists, in every concurrency model, and before privileges
//! are dropped), and exits with the one-line [`ProbeFailure`] instead.
//!
//! **What is asked.** The credentials, when their source fetches them (a
//! web identity, an ECS task, an EKS pod, the instance: a static key needs
//! no request), then `ListObjectsV2` of the served prefix with `max-keys=1`:
//! what `get_file_listing` needs, and the one request that tells a missing
//! bucket (`404 NoSuchBucket`) from a refused key (`403`). No retry, at
//! most [`PROBE_TIMEOUT`] in all, on a client and a single-threaded
//! runtime of its own that are gone when it returns: the `fork` model's
//! parent must stay single-threaded, and the serving client is made in
//! each process that serves (see the module docs of [`super`]).
//!
//! **Classes.** Unreachable (connection refused, no such host, no answer in
//! time: check the endpoint variable), bucket missing (create it), access
//! denied (check the key variables; never a value), credentials not
//! obtained (their source), and any other answer (the store's own code and
//! message, shortened). Every text from the store passes through
//! [`super::redact`].

use std::time::Duration;

use object_store::aws::AmazonS3ConfigKey;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};

use super::credentials::Source;
use super::{redact, ObjectStorage};

/// The bound on the whole probe, credentials included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the probe's runtime may take to stop its threads (a name
/// lookup still running in one) once the probe is over.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// Where `object_store` asks for instance credentials unless
/// `AWS_METADATA_ENDPOINT` says otherwise.
const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// The longest text of the store's quoted in a message.
const MAX_ANSWER: usize = 200;

/// Where the endpoint of the backend was configured, for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// This variable (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT`, ...).
    Variable(&'static str),
    /// None: AWS's own endpoint of the region.
    AwsDefault,
    /// Given explicitly (tests and tools).
    Given,
}

/// Why a bucket cannot be served: each displays as one line, without the
/// URL of the bucket (the caller says what it could not serve).
#[derive(Debug)]
pub enum ProbeFailure {
    /// The store could not be reached: connection refused, no such host,
    /// a TLS failure, or no answer within [`PROBE_TIMEOUT`].
    Unreachable {
        endpoint: String,
        configured: EndpointSource,
        cause: String,
    },
    /// `404` / `NoSuchBucket`.
    BucketMissing { bucket: String, endpoint: String },
    /// `401`, `403` (`AccessDenied`, `InvalidAccessKeyId`,
    /// `SignatureDoesNotMatch`, ...).
    AccessDenied {
        bucket: String,
        credentials: Source,
        answer: String,
    },
    /// The credentials' source did not give any (`at`: the metadata
    /// service asked).
    Credentials {
        credentials: Source,
        at: Option<String>,
        cause: String,
    },
    /// Anything else: the store's own words.
    Other { endpoint: String, answer: String },
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeFailure::Unreachable {
                endpoint,
                configured,
                cause,
            } => {
                write!(f, "the store at {endpoint} cannot be reached ({cause})")?;
                match configured {
                    EndpointSource::Variable(var) => write!(f, ": check {var}"),
                    EndpointSource::AwsDefault => {
                        write!(f, ": set AWS_ENDPOINT_URL to the store's endpoint")
                    }
                    EndpointSource::Given => Ok(()),
                }
            }
            ProbeFailure::BucketMissing { bucket, endpoint } => write!(
                f,
                "bucket {bucket} does not exist at {endpoint}: create it \
                 (`garage bucket create {bucket}`, `aws s3 mb s3://{bucket}`) \
                 or name an existing one in --storage"
            ),
            ProbeFailure::AccessDenied {
                bucket,
                credentials,
                answer,
            } => {
                write!(f, "access denied ({answer}): ")?;
                match credentials {
                    Source::Static => write!(
                        f,
                        "check that AWS_ACCESS_KEY_ID names a key of the store, that \
                         AWS_SECRET_ACCESS_KEY is its secret, and that the key may read \
                         bucket {bucket}"
                    ),
                    Source::Unsigned => write!(
                        f,
                        "bucket {bucket} is not public: set AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY instead of AWS_SKIP_SIGNATURE"
                    ),
                    other => write!(
                        f,
                        "check that the credentials of {} may read bucket {bucket}",
                        other.describe()
                    ),
                }
            }
            ProbeFailure::Credentials {
                credentials,
                at,
                cause,
            } => {
                write!(f, "cannot get credentials from {}", credentials.describe())?;
                if let Some(at) = at {
                    write!(f, " at {at}")?;
                }
                write!(f, ": {cause}")
            }
            ProbeFailure::Other { endpoint, answer } => {
                write!(f, "the store at {endpoint} refused the probe: {answer}")
            }
        }
    }
}

/// Which step of the probe failed, and how (`None`: no answer in time).
enum Step {
    Credentials(Option<object_store::Error>),
    List(Option<object_store::Error>),
}

impl ObjectStorage {
    /// Checks once that the bucket can be served: the credentials, then
    /// one `LIST` of the served prefix (see the module docs). Blocks for at
    /// most [`PROBE_TIMEOUT`] (and [`RUNTIME_SHUTDOWN`]); leaves no thread
    /// behind, so it may run before the `fork` model starts.
    pub fn probe(&self) -> Result<(), ProbeFailure> {
        let inner = &self.inner;
        let store = inner
            .builder
            .clone()
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}s", PROBE_TIMEOUT.as_secs()),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 0,
                retry_timeout: PROBE_TIMEOUT,
            })
            .build()
            .map_err(|e| self.other(&e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProbeFailure::Other {
                endpoint: inner.endpoint.clone(),
                answer: format!("cannot start the probe: {e}"),
            })?;
        let prefix = inner.key_prefix.clone();
        let unsigned = inner.credentials == Source::Unsigned;
        let probe = async move {
            let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
            if !unsigned {
                // A static key answers at once; other sources ask theirs.
                match tokio::time::timeout_at(deadline, store.credentials().get_credential()).await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(Step::Credentials(Some(e))),
                    Err(_) => return Err(Step::Credentials(None)),
                }
            }
            let options = PaginatedListOptions {
                delimiter: Some("/".into()),
                max_keys: Some(1),
                ..Default::default()
            };
            let prefix = (!prefix.is_empty()).then_some(prefix.as_str());
            match tokio::time::timeout_at(deadline, store.list_paginated(prefix, options)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(Step::List(Some(e))),
                Err(_) => Err(Step::List(None)),
            }
        };
        let outcome = runtime.block_on(probe);
        runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
        match outcome {
            Ok(()) => Ok(()),
            Err(Step::Credentials(e)) => Err(ProbeFailure::Credentials {
                credentials: inner.credentials,
                at: (inner.credentials == Source::Instance).then(|| {
                    let endpoint = inner
                        .builder
                        .get_config_value(&AmazonS3ConfigKey::MetadataEndpoint)
                        .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.into());
                    super::shown_endpoint(&endpoint, &inner.secrets)
                }),
                cause: match e {
                    Some(e) if http_error_kind(&e) != Some(HttpErrorKind::Timeout) => {
                        self.cause(&e)
                    }
                    _ => late(),
                },
            }),
            Err(Step::List(Some(e))) => Err(self.classify(&e)),
            Err(Step::List(None)) => Err(ProbeFailure::Unreachable {
                endpoint: inner.endpoint.clone(),
                configured: inner.endpoint_source.clone(),
                cause: late(),
            }),
        }
    }

    /// The class of a failed `LIST`.
    fn classify(&self, e: &object_store::Error) -> ProbeFailure {
        let inner = &self.inner;
        let unreachable = |cause: String| ProbeFailure::Unreachable {
            endpoint: inner.endpoint.clone(),
            configured: inner.endpoint_source.clone(),
            cause,
        };
        match http_error_kind(e) {
            Some(HttpErrorKind::Connect) => return unreachable(self.cause(e)),
            Some(HttpErrorKind::Timeout) => return unreachable(late()),
            _ => {}
        }
        let text = redact(&one_line(&e.to_string()), &inner.secrets);
        let code = between(&text, "<Code>", "</Code>");
        let status = status(&text).or(match e {
            object_store::Error::NotFound { .. } => Some(404),
            object_store::Error::PermissionDenied { .. } => Some(403),
            object_store::Error::Unauthenticated { .. } => Some(401),
            _ => None,
        });
        let answer = match answer(status, code, between(&text, "<Message>", "</Message>")) {
            Some(answer) => shorten(answer),
            None => self.cause(e),
        };
        let denied = matches!(
            code,
            Some(
                "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidToken"
                    | "ExpiredToken"
                    | "AllAccessDisabled"
            )
        );
        if code == Some("NoSuchBucket") || (code.is_none() && status == Some(404)) {
            ProbeFailure::BucketMissing {
                bucket: inner.url.bucket.clone(),
                endpoint: inner.endpoint.clone(),
            }
        } else if denied || (code.is_none() && matches!(status, Some(401 | 403))) {
            ProbeFailure::AccessDenied {
                bucket: inner.url.bucket.clone(),
                credentials: inner.credentials,
                answer,
            }
        } else {
            ProbeFailure::Other {
                endpoint: inner.endpoint.clone(),
                answer,
            }
        }
    }

    /// The innermost cause of `e` (`Connection refused (os error 111)`),
    /// fit for one line of a message.
    fn cause(&self, e: &object_store::Error) -> String {
        let mut innermost: &dyn std::error::Error = e;
        while let Some(source) = innermost.source() {
            innermost = source;
        }
        self.clean(&innermost.to_string())
    }

    fn other(&self, e: &object_store::Error) -> ProbeFailure {
        ProbeFailure::Other {
            endpoint: self.inner.endpoint.clone(),
            answer: self.clean(&e.to_string()),
        }
    }

    /// `text` redacted, on one line, at most [`MAX_ANSWER`] characters.
    fn clean(&self, text: &str) -> String {
        shorten(redact(&one_line(text), &self.inner.secrets))
    }
}

/// `text` with every run of white space (line breaks too) one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut to [`MAX_ANSWER`] characters.
fn shorten(text: String) -> String {
    match text.char_indices().nth(MAX_ANSWER) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// What a request that timed out is called in a message.
fn late() -> String {
    format!("no answer within {} s", PROBE_TIMEOUT.as_secs())
}

/// The kind of the HTTP failure under `e`, if it is one.
fn http_error_kind(e: &object_store::Error) -> Option<HttpErrorKind> {
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(error) = next {
        if let Some(http) = error.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        next = error.source();
    }
    None
}

/// The text between `open` and `close` (an element of an S3 error body).
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(text[start..start + len].trim()).filter(|s| !s.is_empty())
}

/// The status of an answer that was not a success, as `object_store`
/// words it (`... status code: 404 Not Found: ...`).
fn status(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// `403 AccessDenied: Forbidden: Invalid signature`, from what is known.
fn answer(status: Option<u16>, code: Option<&str>, message: Option<&str>) -> Option<String> {
    let words: Vec<String> = [status.map(|s| s.to_string()), code.map(str::to_string)]
        .into_iter()
        .flatten()
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut answer = words.join(" ");
    if let Some(message) = message {
        answer.push_str(": ");
        answer.push_str(message);
    }
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies_give_their_code_message_and_status() {
        let text = "Generic S3 error: Error performing list request: Error performing GET \
                    http://127.0.0.1:3900/nosuch?<query redacted> in 2ms - Server returned \
                    non-2xx status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                    <Error><Code>NoSuchBucket</Code><Message>Bucket not found: nosuch</Message>\
                    <Resource>/nosuch</Resource><Region>garage</Region></Error>";
        assert_eq!(between(text, "<Code>", "</Code>"), Some("NoSuchBucket"));
        assert_eq!(status(text), Some(404));
        assert_eq!(
            answer(
                status(text),
                between(text, "<Code>", "</Code>"),
                between(text, "<Message>", "</Message>")
            )
            .as_deref(),
            Some("404 NoSuchBucket: Bucket not found: nosuch")
        );
        assert_eq!(status("no status here"), None);
        assert_eq!(between("<Code></Code>", "<Code>", "</Code>"), None);
        assert_eq!(answer(None, None, Some("words")), None);
    }

    #[test]
    fn every_failure_is_one_line_naming_what_to_fix() {
        let failures = [
            ProbeFailure::Unreachable {
                endpoint: "http://127.0.0.1:9".into(),
                configured: EndpointSource::Variable("AWS_ENDPOINT"),
                cause: "Connection refused (os error 111)".into(),
            },
            ProbeFailure::BucketMissing {
                bucket: "files".into(),
                endpoint: "http://127.0.0.1:3900".into(),
            },
            ProbeFailure::AccessDenied {
                bucket: "files".into(),
                credentials: Source::Static,
                answer: "403 AccessDenied: Forbidden".into(),
            },
            ProbeFailure::Credentials {
                credentials: Source::Instance,
                at: Some("http://169.254.169.254".into()),
                cause: "Connection refused (os error 111)".into(),
            },
            ProbeFailure::Other {
                endpoint: "http://127.0.0.1:3900".into(),
                answer: "400 AuthorizationHeaderMalformed: wrong region".into(),
            },
        ];
        let lines: Vec<String> = failures.iter().map(ToString::to_string).collect();
        for line in &lines {
            assert!(!line.contains('\n'), "{line}");
        }
        assert!(lines[0].ends_with(
            "cannot be reached (Connection refused (os error 111)): check AWS_ENDPOINT"
        ));
        assert!(
            lines[1].contains("bucket files does not exist at http://127.0.0.1:3900: create it")
        );
        assert!(lines[2].contains("AWS_ACCESS_KEY_ID") && lines[2].contains("bucket files"));
        assert!(
            lines[3].contains("--s3-instance-credentials"),
            "{}",
            lines[3]
        );
        assert!(
            lines[3].contains("at http://169.254.169.254:"),
            "{}",
            lines[3]
        );
        assert!(lines[4].contains("wrong region"));
    }
}
