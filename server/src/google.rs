//! Google ID tokens (issue 13): the RS256 signature against the keys
//! published at `--google-jwks-url`, the issuer, the expiry and the
//! audience `--google-client-id`. No HTTP of ours here beyond fetching the
//! keys.
//!
//! The keys are cached for an hour; a token signed by a key not in the
//! cache fetches them again (Google rotates its keys), at most once every
//! [`REFETCH_AFTER`], so forged `kid`s cannot make us fetch on every call.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How long fetched keys are used without asking again.
const KEYS_TTL: Duration = Duration::from_secs(3_600);

/// The shortest time between two fetches forced by an unknown key id.
const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// Google's two spellings of its issuer.
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// What a login takes from a verified token.
#[derive(Debug, Deserialize)]
pub struct GoogleIdentity {
    pub sub: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub email_verified: EmailVerified,
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub family_name: String,
}

/// `email_verified` is a boolean in Google's tokens, a string in some
/// older ones.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum EmailVerified {
    Bool(bool),
    Text(String),
    #[default]
    Missing,
}

impl EmailVerified {
    pub fn is_true(&self) -> bool {
        match self {
            EmailVerified::Bool(b) => *b,
            EmailVerified::Text(s) => s == "true",
            EmailVerified::Missing => false,
        }
    }
}

/// Why a token was refused: its text is the `details` of the 401.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    /// The keys could not be fetched: not the token's fault (503).
    #[error("Google's signing keys could not be fetched: {0}")]
    Keys(String),
}

pub struct GoogleVerifier {
    client_id: String,
    jwks_url: String,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<Option<(Instant, JwkSet)>>,
}

impl GoogleVerifier {
    /// `None` without a client id: Google login is not configured.
    pub fn new(client_id: Option<&str>, jwks_url: &str) -> Option<GoogleVerifier> {
        let client_id = client_id.map(str::trim).filter(|id| !id.is_empty())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with a timeout builds");
        Some(GoogleVerifier {
            client_id: client_id.to_string(),
            jwks_url: jwks_url.to_string(),
            http,
            keys: tokio::sync::Mutex::new(None),
        })
    }

    /// The identity in `token` if Google signed it for us and it is
    /// still valid.
    pub async fn verify(&self, token: &str) -> Result<GoogleIdentity, TokenError> {
        let invalid = |e: jsonwebtoken::errors::Error| TokenError::Invalid(e.to_string());
        let header = decode_header(token).map_err(invalid)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Invalid(format!(
                "unexpected algorithm {:?}",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("the token names no key (kid)".into()))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.client_id]);
        validation.set_issuer(&ISSUERS);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = decode::<GoogleIdentity>(token, &key, &validation).map_err(invalid)?;
        Ok(data.claims)
    }

    /// The key `kid`, from the cache or a fresh fetch.
    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        let mut cached = self.keys.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < KEYS_TTL);
        let known = cached.as_ref().and_then(|(_, set)| set.find(kid)).is_some();
        let may_refetch = cached
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= REFETCH_AFTER);
        if !fresh || (!known && may_refetch) {
            match self.fetch().await {
                Ok(set) => *cached = Some((Instant::now(), set)),
                // Stale keys still verify while the endpoint is down.
                Err(e) if cached.is_none() => return Err(e),
                Err(e) => tracing::warn!("Google keys not refreshed: {e}"),
            }
        }
        let jwk = cached
            .as_ref()
            .and_then(|(_, set)| set.find(kid))
            .ok_or_else(|| TokenError::Invalid(format!("unknown signing key {kid:?}")))?;
        DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Invalid(e.to_string()))
    }

    async fn fetch(&self) -> Result<JwkSet, TokenError> {
        let keys = |e: reqwest::Error| TokenError::Keys(e.to_string());
        self.http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(keys)?
            .json::<JwkSet>()
            .await
            .map_err(keys)
    }
}
