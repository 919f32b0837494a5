//! Secrets at work: password hashing, signed session tokens, CSRF tokens and
//! service-account API tokens. Functions that touch a secret are instrumented
//! with `skip_all` so no secret reaches a log line.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm as ArgonAlgorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use uuid::Uuid;

mod jwt_hmac;

/// Audience of browser session cookies.
pub const AUD_WEB: &str = "cab-web";
/// Audience of API access tokens.
pub const AUD_API: &str = "cab-api";
/// The one signing algorithm; tokens naming any other are refused.
const JWT_ALG: Algorithm = Algorithm::HS256;
/// Prefix of service-account API tokens, so they are recognisable in leaks.
pub const API_TOKEN_PREFIX: &str = "cab_";

/// Argon2id with the OWASP-recommended parameters (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    #[allow(clippy::expect_used)]
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(ArgonAlgorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing is saturated; try again shortly")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Hashes and checks passwords off the async runtime, a bounded number at a
/// time, so a flood of sign-ins queues here instead of starving other requests.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Checked against when the account does not exist, so that a wrong
    /// username costs as much time as a wrong password.
    dummy_hash: Arc<String>,
}

impl Passwords {
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon2()
            .hash_password(b"not a real password, only for timing", &salt)
            .map_err(|e| HashError::Failed(e.to_string()))?
            .to_string();
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: Arc::new(dummy),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(
            StdDuration::from_secs(10),
            self.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| HashError::Busy)?
        .map_err(|_| HashError::Busy)?;
        let out = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?;
        Ok(out)
    }

    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Failed(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `hash`; with no hash (unknown account,
    /// service account) it does the same work and answers false.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, hash: Option<String>, password: String) -> Result<bool, HashError> {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| (*self.dummy_hash).clone());
        self.run(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
                && real
        })
        .await
    }
}

/// Claims of every signed token CAB issues. `sid` names a server-side session.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// The keys derived from `CAB_SECRET_KEY`.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    csrf: Arc<Vec<u8>>,
    notice: Arc<Vec<u8>>,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        jwt_hmac::install();
        let jwt = jwt_key(secret);
        let csrf = hmac_bytes(secret, b"cab csrf key");
        let notice = hmac_bytes(secret, b"cab notice key");
        Self {
            encoding: EncodingKey::from_secret(&jwt),
            decoding: DecodingKey::from_secret(&jwt),
            csrf: Arc::new(csrf),
            notice: Arc::new(notice),
        }
    }

    #[tracing::instrument(skip_all)]
    pub fn sign(
        &self,
        user: Uuid,
        session: Uuid,
        aud: &str,
        now: DateTime<Utc>,
        exp: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user,
            sid: session,
            aud: aud.to_owned(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(JWT_ALG),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature, algorithm, audience and expiry.
    #[tracing::instrument(skip_all)]
    pub fn verify(&self, token: &str, aud: &str) -> Option<Claims> {
        let mut validation = Validation::new(JWT_ALG);
        validation.set_audience(&[aud]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|d| d.claims)
    }

    /// The CSRF token bound to a session (or, before sign-in, to the login
    /// cookie): an HMAC, so it needs no storage and dies with the session.
    pub fn csrf_token(&self, binding: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac_bytes(&self.csrf, binding.as_bytes()))
    }

    pub fn csrf_matches(&self, binding: &str, presented: &str) -> bool {
        let expected = self.csrf_token(binding);
        expected.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// A tag proving the server itself wrote a one-time notice: an HMAC
    /// with a key of its own, so a cookie planted by anyone else says nothing.
    pub fn notice_tag(&self, message: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac_bytes(&self.notice, message.as_bytes()))
    }

    pub fn notice_matches(&self, message: &str, presented: &str) -> bool {
        let expected = self.notice_tag(message);
        expected.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The token-signing key derived from `CAB_SECRET_KEY`: separate keys for
/// separate purposes, derived from the one secret.
pub fn jwt_key(secret: &[u8]) -> Vec<u8> {
    hmac_bytes(secret, b"cab jwt signing key")
}

fn hmac_bytes(key: &[u8], msg: &[u8]) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// `n` random bytes, URL-safe base64.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new service-account token: what the caller is shown once, and what is stored.
pub struct IssuedApiToken {
    pub secret: String,
    pub hash: Vec<u8>,
    pub prefix: String,
}

pub fn issue_api_token() -> IssuedApiToken {
    let secret = format!("{API_TOKEN_PREFIX}{}", random_token(32));
    IssuedApiToken {
        hash: api_token_hash(&secret),
        prefix: secret.chars().take(12).collect(),
        secret,
    }
}

pub fn api_token_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A password for a new account when none is given: 120 random bits.
pub fn generate_password() -> String {
    random_token(15)
}
