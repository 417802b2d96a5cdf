//! Where the backend's credentials come from, decided from its settings
//! alone, before any request.
//!
//! **Why.** When no credential is configured, `object_store` falls back to
//! the EC2 instance metadata service (`http://169.254.169.254`): off EC2
//! every request then fails after a detour through an address outside this
//! network, and the server answers `199` to everything. So that fallback
//! is never taken silently: with no configured source, the backend is not
//! made at all ([`source`] says which variables to set) unless instance
//! credentials were asked for ([`super::ObjectStorage::from_env`]'s
//! `instance_credentials`, `hftp serve --s3-instance-credentials`).
//!
//! The sources, in `object_store`'s own order of precedence (the first
//! configured one is used): a static key, a web identity token, an ECS
//! task's credentials, an EKS pod identity, and last the instance's role.
//! `AWS_SKIP_SIGNATURE=true` (a public bucket) needs none. An empty
//! variable counts as unset ([`super::settings_from_env`] drops it).

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// The source of the credentials the backend signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and maybe
    /// `AWS_SESSION_TOKEN`), or keys given explicitly.
    Static,
    /// `AWS_SKIP_SIGNATURE=true`: unsigned requests, no credential.
    Unsigned,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN` (STS).
    WebIdentity,
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (an ECS task).
    Container,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (an EKS pod identity).
    PodIdentity,
    /// The EC2 instance metadata service: only when asked for.
    Instance,
}

impl Source {
    /// What the source is, for a message.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Static => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            Source::Unsigned => "none (AWS_SKIP_SIGNATURE=true)",
            Source::WebIdentity => {
                "the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
            }
            Source::Container => "the ECS task (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)",
            Source::PodIdentity => "the EKS pod identity (AWS_CONTAINER_CREDENTIALS_FULL_URI)",
            Source::Instance => "the EC2 instance metadata service (--s3-instance-credentials)",
        }
    }
}

/// Pairs of variables that configure a source only together.
const PAIRS: [(&str, AmazonS3ConfigKey, &str, AmazonS3ConfigKey); 3] = [
    (
        "AWS_ACCESS_KEY_ID",
        AmazonS3ConfigKey::AccessKeyId,
        "AWS_SECRET_ACCESS_KEY",
        AmazonS3ConfigKey::SecretAccessKey,
    ),
    (
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        AmazonS3ConfigKey::WebIdentityTokenFile,
        "AWS_ROLE_ARN",
        AmazonS3ConfigKey::RoleArn,
    ),
    (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        AmazonS3ConfigKey::ContainerCredentialsFullUri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        AmazonS3ConfigKey::ContainerAuthorizationTokenFile,
    ),
];

/// What to set when no source is configured: one line.
pub const NO_CREDENTIALS: &str = "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
(other sources: AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, \
AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, AWS_CONTAINER_CREDENTIALS_FULL_URI with \
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, AWS_SKIP_SIGNATURE=true for a public bucket, \
or --s3-instance-credentials for the role of this EC2 instance)";

/// The source `builder` would use, or why none is usable (one line).
/// The instance metadata service is a source only if `instance_allowed`.
pub fn source(builder: &AmazonS3Builder, instance_allowed: bool) -> Result<Source, String> {
    let set = |key: &AmazonS3ConfigKey| {
        builder
            .get_config_value(key)
            .is_some_and(|value| !value.is_empty())
    };
    let (key_id, secret) = (
        set(&AmazonS3ConfigKey::AccessKeyId),
        set(&AmazonS3ConfigKey::SecretAccessKey),
    );
    // Half a static key is an error of object_store itself; half of another
    // pair is ignored by it (and would fall through to the instance).
    if key_id != secret {
        return Err(half_pair(&PAIRS[0], key_id));
    }
    let skip_signature = builder
        .get_config_value(&AmazonS3ConfigKey::SkipSignature)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    if key_id {
        return Ok(Source::Static);
    }
    if skip_signature {
        return Ok(Source::Unsigned);
    }
    let both =
        |pair: &(&str, AmazonS3ConfigKey, &str, AmazonS3ConfigKey)| set(&pair.1) && set(&pair.3);
    if both(&PAIRS[1]) {
        return Ok(Source::WebIdentity);
    }
    if set(&AmazonS3ConfigKey::ContainerCredentialsRelativeUri) {
        return Ok(Source::Container);
    }
    if both(&PAIRS[2]) {
        return Ok(Source::PodIdentity);
    }
    if instance_allowed {
        return Ok(Source::Instance);
    }
    match PAIRS[1..].iter().find(|pair| set(&pair.1) != set(&pair.3)) {
        Some(pair) => Err(half_pair(pair, set(&pair.1))),
        None => Err(NO_CREDENTIALS.to_string()),
    }
}

/// `FIRST is set but SECOND is not` (or the other way round).
fn half_pair(pair: &(&str, AmazonS3ConfigKey, &str, AmazonS3ConfigKey), first_set: bool) -> String {
    let (set, unset) = if first_set {
        (pair.0, pair.2)
    } else {
        (pair.2, pair.0)
    };
    format!("no credentials: {set} is set but {unset} is not (set both)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(settings: &[(&str, &str)]) -> AmazonS3Builder {
        settings
            .iter()
            .fold(AmazonS3Builder::new(), |builder, (key, value)| {
                builder.with_config(key.to_ascii_lowercase().parse().unwrap(), *value)
            })
    }

    #[test]
    fn nothing_configured_is_no_credentials_unless_the_instance_is_allowed() {
        let none = builder(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")]);
        let err = source(&none, false).unwrap_err();
        assert_eq!(err, NO_CREDENTIALS);
        assert!(err.contains("AWS_ACCESS_KEY_ID") && !err.contains('\n'));
        assert_eq!(source(&none, true), Ok(Source::Instance));
    }

    #[test]
    fn each_configured_source_is_found_in_object_stores_order() {
        let key = [
            ("AWS_ACCESS_KEY_ID", "GKid"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ];
        assert_eq!(source(&builder(&key), false), Ok(Source::Static));
        let web = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:x"),
        ];
        assert_eq!(source(&builder(&web), false), Ok(Source::WebIdentity));
        let both: Vec<_> = key.iter().chain(web.iter()).copied().collect();
        assert_eq!(source(&builder(&both), false), Ok(Source::Static));
        assert_eq!(
            source(
                &builder(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/x")]),
                false
            ),
            Ok(Source::Container)
        );
        assert_eq!(
            source(
                &builder(&[
                    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/x"),
                    ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/t"),
                ]),
                false
            ),
            Ok(Source::PodIdentity)
        );
        assert_eq!(
            source(&builder(&[("AWS_SKIP_SIGNATURE", "true")]), false),
            Ok(Source::Unsigned)
        );
    }

    #[test]
    fn half_a_pair_names_the_missing_variable_and_never_a_value() {
        let err = source(&builder(&[("AWS_ACCESS_KEY_ID", "GKsecretid")]), true).unwrap_err();
        assert_eq!(
            err,
            "no credentials: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not (set both)"
        );
        let err = source(&builder(&[("AWS_SECRET_ACCESS_KEY", "s3cr3t")]), false).unwrap_err();
        assert!(err.contains("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"));
        assert!(!err.contains("s3cr3t"));
        let err = source(&builder(&[("AWS_ROLE_ARN", "arn:x")]), false).unwrap_err();
        assert!(
            err.contains("AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not"),
            "{err}"
        );
        // Empty values are unset.
        let empty = builder(&[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")]);
        assert_eq!(source(&empty, false).unwrap_err(), NO_CREDENTIALS);
    }
}
