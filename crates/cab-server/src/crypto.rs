//! Secrets at work: password hashing, signed session tokens, CSRF tokens and
//! service-account API tokens. Functions that touch a secret are instrumented
//! with `skip_all` so no secret reaches a log line.

use std::sync::Arc;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm as ArgonAlgorithm, Argon2, Block, Params, Version};
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
use uuid::Uuid;

pub mod checkpoint;
pub mod deploy;
mod jwt_backend;
pub mod slots;

pub use slots::{Who, address_key};

/// Audience of browser session cookies.
pub const AUD_WEB: &str = "cab-web";
/// Audience of API access tokens.
pub const AUD_API: &str = "cab-api";
/// The one signing algorithm; tokens naming any other are refused.
const JWT_ALG: Algorithm = Algorithm::HS256;
/// Prefix of service-account API tokens, so they are recognisable in leaks.
pub const API_TOKEN_PREFIX: &str = "cab_";

/// Argon2id with the OWASP-recommended parameters (19 MiB, 2 passes, 1 lane).
fn argon2_params() -> Params {
    #[allow(clippy::expect_used)]
    Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid")
}

/// What an unknown account's password is checked against, so that a wrong
/// username costs as much time as a wrong password: a hash in CAB's format
/// and parameters that no password produces.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bm90IGEgcmVhbCBzYWx0IQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing is saturated; try again shortly")]
    Busy,
    /// The client already has a password being checked.
    #[error("a password check for this client is already under way")]
    OneAtATime,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl From<slots::Refusal> for HashError {
    fn from(r: slots::Refusal) -> Self {
        match r {
            slots::Refusal::OneAtATime => HashError::OneAtATime,
            slots::Refusal::Full => HashError::Busy,
        }
    }
}

/// Hashes and checks passwords off the async runtime, a bounded number at a
/// time, each in a working memory of its own that is made once and reused
/// (see [`slots`]): a flood of sign-ins queues here, fairly, instead of
/// starving other requests or growing the process.
#[derive(Clone)]
pub struct Passwords {
    slots: Arc<slots::Slots>,
}

/// How many passwords are checked at once: one fewer than the cores, and at
/// least one. Hashing never takes every core, so under a flood of sign-ins
/// the rest of the service (pages, the API, writing down each sign-in) keeps
/// one to itself.
pub fn hashing_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// A place in the queue for a password check; see [`Passwords::enter`].
pub struct CheckTicket {
    ticket: slots::Ticket,
}

impl Passwords {
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        Ok(Self {
            slots: Arc::new(slots::Slots::new(
                concurrency,
                argon2_params().block_count(),
            )),
        })
    }

    /// Takes a place in the queue for a sign-in, before anything else is
    /// done for it: refused at once when the client already has a check
    /// under way ([`HashError::OneAtATime`]) or the queue is full of others
    /// who rank as well ([`HashError::Busy`]).
    pub fn enter(&self, who: Who) -> Result<CheckTicket, HashError> {
        Ok(CheckTicket {
            ticket: self.slots.enter(who)?,
        })
    }

    async fn run<T: Send + 'static>(
        ticket: &mut slots::Ticket,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let mut lease = ticket.slot().await?;
        tokio::task::spawn_blocking(move || work(lease.memory()))
            .await
            .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// A new hash of `password`, for an account being created or a password
    /// being set; this work waits for a slot but is never turned away.
    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let mut ticket = self.slots.enter(Who::Trusted)?;
        Self::run(&mut ticket, move |memory| hash_with(&password, memory)).await?
    }
}

impl CheckTicket {
    /// Whether `password` matches `hash`; with no hash (unknown account,
    /// service account) it does the same work and answers false.
    #[tracing::instrument(skip_all)]
    pub async fn verify(
        &mut self,
        hash: Option<String>,
        password: String,
    ) -> Result<bool, HashError> {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        Passwords::run(&mut self.ticket, move |memory| {
            verify_with(&hash, &password, memory) && real
        })
        .await
    }

    /// Counts a wrong password (or a refusal while locked) against the
    /// client, placing its next checks behind those of clients that fail
    /// less.
    pub fn failed(&self) {
        self.ticket.failed();
    }
}

/// A PHC string for `password` with a fresh salt, computed in `memory`:
/// the same format `argon2`'s own hasher writes.
fn hash_with(password: &str, memory: &mut [Block]) -> Result<String, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let params = argon2_params();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| failed(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(ArgonAlgorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, memory)
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: ArgonAlgorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash`, computed in `memory`
/// (or, for a hash whose parameters need more, in memory of its own), and
/// compared in constant time.
fn verify_with(hash: &str, password: &str, memory: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = ArgonAlgorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut own;
    let memory = if params.block_count() <= memory.len() {
        memory
    } else {
        own = vec![Block::new(); params.block_count()];
        own.as_mut_slice()
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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
    device: Arc<Vec<u8>>,
    idempotency: Arc<Vec<u8>>,
    signing_seal: Arc<Vec<u8>>,
}

/// Installs CAB's `jsonwebtoken` backend (idempotent), for code that checks
/// tokens without a [`Keys`] (the offline `cab gate verify`).
pub fn install_backend() {
    jwt_backend::install();
}

/// How long a device cookie is honoured after it was issued; each sign-in
/// issues a new one.
pub const DEVICE_COOKIE_LIFETIME: chrono::Duration = chrono::Duration::days(90);

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        jwt_backend::install();
        let jwt = jwt_key(secret);
        let csrf = hmac_bytes(secret, b"cab csrf key");
        let notice = hmac_bytes(secret, b"cab notice key");
        let device = hmac_bytes(secret, b"cab device cookie key");
        let idempotency = hmac_bytes(secret, b"cab idempotency key");
        let signing_seal = hmac_bytes(secret, b"cab signing key seal");
        Self {
            encoding: EncodingKey::from_secret(&jwt),
            decoding: DecodingKey::from_secret(&jwt),
            csrf: Arc::new(csrf),
            notice: Arc::new(notice),
            device: Arc::new(device),
            idempotency: Arc::new(idempotency),
            signing_seal: Arc::new(signing_seal),
        }
    }

    /// The key that seals what is kept for a retried API request, one per
    /// caller and Idempotency-Key (`scope`): see `crate::idempotency`.
    pub fn idempotency_key(&self, scope: &[u8]) -> Vec<u8> {
        hmac_bytes(&self.idempotency, scope)
    }

    /// The key that seals the private halves of deployment signing keys.
    pub fn signing_seal_key(&self) -> Vec<u8> {
        self.signing_seal.to_vec()
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

    fn device_tag(&self, username: &str, id: &str, issued: i64) -> String {
        let msg = format!("{username}\n{id}\n{issued}");
        URL_SAFE_NO_PAD.encode(hmac_bytes(&self.device, msg.as_bytes()))
    }

    /// A device cookie for a browser that has just signed in as `username`
    /// (OWASP's device cookies): a random identifier and the time of issue,
    /// bound to the username by an HMAC with a key of its own.
    #[tracing::instrument(skip_all)]
    pub fn device_cookie(&self, username: &str, now: DateTime<Utc>) -> String {
        let id = random_token(16);
        let issued = now.timestamp();
        format!("{id}.{issued}.{}", self.device_tag(username, &id, issued))
    }

    /// The identifier of a device cookie this server issued for `username`
    /// and that has not expired; `None` for anything else.
    #[tracing::instrument(skip_all)]
    pub fn device_id(&self, cookie: &str, username: &str, now: DateTime<Utc>) -> Option<String> {
        let mut parts = cookie.split('.');
        let (id, issued, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.len() < 16 {
            return None;
        }
        let issued: i64 = issued.parse().ok()?;
        let age = now.timestamp().checked_sub(issued)?;
        // A minute's grace for clocks of replicas that disagree a little.
        if !(-60..=DEVICE_COOKIE_LIFETIME.num_seconds()).contains(&age) {
            return None;
        }
        let expected = self.device_tag(username, id, issued);
        bool::from(expected.as_bytes().ct_eq(tag.as_bytes())).then(|| id.to_owned())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    fn memory() -> Vec<Block> {
        vec![Block::new(); argon2_params().block_count()]
    }

    fn standard() -> Argon2<'static> {
        Argon2::new(ArgonAlgorithm::Argon2id, Version::V0x13, argon2_params())
    }

    #[test]
    fn hashes_made_in_a_slot_are_the_standard_format_both_ways() {
        let mut mem = memory();
        let ours = hash_with("correct horse battery", &mut mem).unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert_eq!(parsed.salt.unwrap().len(), 22);
        assert_eq!(parsed.hash.unwrap().len(), 32);
        assert!(
            standard()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        assert!(standard().verify_password(b"wrong", &parsed).is_err());
        // A hash written by the library (every hash stored so far) checks
        // here, in the reused memory, whatever the memory held before.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = standard()
            .hash_password(b"stored before", &salt)
            .unwrap()
            .to_string();
        assert_eq!(theirs.len(), ours.len());
        assert!(verify_with(&theirs, "stored before", &mut mem));
        assert!(!verify_with(&theirs, "stored befor", &mut mem));
        assert!(verify_with(&ours, "correct horse battery", &mut mem));
    }

    #[test]
    fn hashes_needing_other_parameters_or_more_memory_still_check() {
        let mut mem = memory();
        for (m, t) in [(8 * 1024, 1), (32 * 1024, 1)] {
            let params = Params::new(m, t, 1, None).unwrap();
            let salt = SaltString::generate(&mut OsRng);
            let hash = Argon2::new(ArgonAlgorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"other params", &salt)
                .unwrap()
                .to_string();
            assert!(verify_with(&hash, "other params", &mut mem), "{hash}");
            assert!(!verify_with(&hash, "other param", &mut mem), "{hash}");
        }
    }

    #[test]
    fn nothing_matches_the_dummy_or_a_malformed_hash() {
        let mut mem = memory();
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(Params::try_from(&parsed).unwrap(), {
            let mut p = argon2::ParamsBuilder::new();
            p.m_cost(19 * 1024).t_cost(2).p_cost(1).output_len(32);
            p.build().unwrap()
        });
        // Shaped like a real one: the same work, salt and output sizes.
        assert_eq!(parsed.salt.unwrap().len(), 22);
        assert_eq!(parsed.hash.unwrap().len(), 32);
        assert!(!verify_with(DUMMY_HASH, "", &mut mem));
        assert!(!verify_with("not a hash", "x", &mut mem));
        assert!(!verify_with(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
            "x",
            &mut mem
        ));
    }

    #[tokio::test]
    async fn an_unknown_account_costs_a_full_check_and_never_matches() {
        let passwords = Passwords::new(1).unwrap();
        let hash = passwords.hash("a good long password".into()).await.unwrap();
        let who = || Who::Address {
            key: "192.0.2.1".into(),
        };
        let mut t = passwords.enter(who()).unwrap();
        assert!(
            t.verify(Some(hash), "a good long password".into())
                .await
                .unwrap()
        );
        drop(t);
        let mut t = passwords.enter(who()).unwrap();
        assert!(!t.verify(None, "a good long password".into()).await.unwrap());
    }

    #[test]
    fn device_cookies_are_bound_to_the_username_and_expire() {
        let keys = Keys::new(b"a secret key that is long enough for tests");
        let now = Utc::now();
        let cookie = keys.device_cookie("erin", now);
        let id = keys.device_id(&cookie, "erin", now).unwrap();
        assert!(cookie.starts_with(&id));
        assert_eq!(keys.device_id(&cookie, "sam", now), None);
        // Another server's key, or a changed part, is not honoured.
        let other = Keys::new(b"another secret key, also long enough");
        assert_eq!(other.device_id(&cookie, "erin", now), None);
        let (_, rest) = cookie.split_once('.').unwrap();
        let forged = format!("{}.{rest}", random_token(16));
        assert_eq!(keys.device_id(&forged, "erin", now), None);
        assert_eq!(keys.device_id(&format!("{cookie}.x"), "erin", now), None);
        assert_eq!(keys.device_id("", "erin", now), None);
        // Honoured for its lifetime, not after.
        let later = now + DEVICE_COOKIE_LIFETIME;
        assert!(keys.device_id(&cookie, "erin", later).is_some());
        let too_late = later + chrono::Duration::seconds(1);
        assert_eq!(keys.device_id(&cookie, "erin", too_late), None);
        // Nor long before it was issued.
        let early = now - chrono::Duration::minutes(5);
        assert_eq!(keys.device_id(&cookie, "erin", early), None);
    }
}
