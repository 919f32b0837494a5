//! `Idempotency-Key` on the API's creating requests: however often a client
//! retries one, and wherever the server stops, one caller's key stands for
//! one effect.
//!
//! The API's guard (`api::idempotency`) turns the header into a [`Claim`]
//! carried by the request's [`Origin`]. A creating service calls [`bind`] in
//! its own transaction, after its audit event and just before it commits: the
//! key's row names what was created, so the effect and its key commit
//! together or not at all. A second request with the same key that raced
//! the first blocks on the key's row until the first commits, then finds the
//! key bound: [`bind`] marks the claim as taken and fails, the service's
//! transaction rolls back, and the guard answers with the first request's
//! answer instead. Refusals and invalid input never reach [`bind`], so they
//! bind nothing and the key stays free.
//!
//! What is kept is sealed (XChaCha20-Poly1305) with a key derived from the
//! server's secret key, the caller and the Idempotency-Key, which itself is
//! kept only as a SHA-256 hash: a generated password or an API token in a
//! stored answer is no more readable in the database than it is elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use cab_db::idempotency::NewKey;
use cab_domain::Denial;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::crypto::Keys;
use crate::error::AppError;
use crate::request::Origin;

/// The request header, as the IETF draft "The Idempotency-Key HTTP Header
/// Field" names it.
pub const HEADER: &str = "idempotency-key";
/// Set (to `true`) on an answer that repeats an earlier request's.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a key stands for its effect.
pub const LIFETIME: chrono::Duration = chrono::Duration::hours(24);
/// The longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// What is sealed, bound into each seal so that one cannot pass for another.
pub const SEALED_SECRET: &[u8] = b"secret";
pub const SEALED_RESPONSE: &[u8] = b"response";

/// The kinds of entity a key can stand for (`idempotency_keys.entity_kind`).
pub mod kind {
    pub const CHANGE: &str = "change";
    pub const COMMENT: &str = "comment";
    pub const USER: &str = "user";
    pub const API_TOKEN: &str = "api_token";
    pub const TEMPLATE: &str = "template";
    pub const DEPLOYMENT: &str = "deployment";
    pub const FREEZE: &str = "freeze";
    pub const BREAK_GLASS: &str = "break_glass";
    pub const OBSERVED: &str = "observed";
    pub const MAINTENANCE_PERIOD: &str = "maintenance_period";
    pub const CALENDAR_FEED: &str = "calendar_feed";
    pub const RELEASE: &str = "release";
    pub const REVIEW_ACTION: &str = "review_action";
}

/// What a creating request made, to bind its key to.
pub enum Created<'a> {
    Change(Uuid),
    Comment(Uuid),
    /// An account, and the password generated for it, shown once.
    User {
        id: Uuid,
        initial_password: Option<&'a str>,
    },
    /// A service account's API token and its secret, shown once.
    ApiToken {
        id: Uuid,
        secret: &'a str,
    },
    Template(Uuid),
    /// A deployment the gate authorized, and its signed authorization.
    Deployment {
        id: Uuid,
        token: &'a str,
    },
    Freeze(Uuid),
    BreakGlass(Uuid),
    /// What a runtime reported running.
    Observed(Uuid),
    MaintenancePeriod(Uuid),
    Release(Uuid),
    /// An action item of a change's review.
    ReviewAction(Uuid),
    /// A calendar feed and the secret in its address, shown once.
    CalendarFeed {
        id: Uuid,
        secret: &'a str,
    },
}

impl Created<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Created::Change(_) => kind::CHANGE,
            Created::Comment(_) => kind::COMMENT,
            Created::User { .. } => kind::USER,
            Created::ApiToken { .. } => kind::API_TOKEN,
            Created::Template(_) => kind::TEMPLATE,
            Created::Deployment { .. } => kind::DEPLOYMENT,
            Created::Freeze(_) => kind::FREEZE,
            Created::BreakGlass(_) => kind::BREAK_GLASS,
            Created::Observed(_) => kind::OBSERVED,
            Created::MaintenancePeriod(_) => kind::MAINTENANCE_PERIOD,
            Created::Release(_) => kind::RELEASE,
            Created::ReviewAction(_) => kind::REVIEW_ACTION,
            Created::CalendarFeed { .. } => kind::CALENDAR_FEED,
        }
    }

    fn id(&self) -> Uuid {
        match self {
            Created::Change(id)
            | Created::Comment(id)
            | Created::User { id, .. }
            | Created::ApiToken { id, .. }
            | Created::Template(id)
            | Created::Deployment { id, .. }
            | Created::Freeze(id)
            | Created::BreakGlass(id)
            | Created::Observed(id)
            | Created::MaintenancePeriod(id)
            | Created::Release(id)
            | Created::ReviewAction(id)
            | Created::CalendarFeed { id, .. } => *id,
        }
    }

    fn secret(&self) -> Option<&str> {
        match self {
            Created::User {
                initial_password, ..
            } => *initial_password,
            Created::ApiToken { secret, .. } => Some(secret),
            Created::Deployment { token, .. } => Some(token),
            Created::CalendarFeed { secret, .. } => Some(secret),
            _ => None,
        }
    }
}

/// What became of a claim while its request was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was bound (nothing created, or the request failed first).
    Unbound,
    /// The effect's transaction bound the key.
    Bound,
    /// Another request bound the key first; this one's effect was undone.
    Taken,
}

/// A caller's Idempotency-Key on one request: who, which key, which request.
#[derive(Clone)]
pub struct Claim(Arc<ClaimInner>);

struct ClaimInner {
    user_id: Uuid,
    key_hash: [u8; 32],
    fingerprint: [u8; 32],
    cipher: XChaCha20Poly1305,
    outcome: AtomicU8,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("user_id", &self.0.user_id)
            .field("outcome", &self.outcome())
            .finish_non_exhaustive()
    }
}

/// SHA-256 of what makes two requests the same: method, path and body.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().into()
}

/// The key, if it is 1 to [`MAX_KEY_LEN`] visible ASCII characters; else why not.
pub fn check_key(raw: &[u8]) -> Result<&str, &'static str> {
    if raw.is_empty() || raw.len() > MAX_KEY_LEN {
        return Err("An Idempotency-Key has 1 to 255 characters.");
    }
    if !raw.iter().all(|b| b.is_ascii_graphic()) {
        return Err(
            "An Idempotency-Key has only visible ASCII characters: no spaces, no control characters, no other letters.",
        );
    }
    std::str::from_utf8(raw).map_err(|_| "An Idempotency-Key has only visible ASCII characters.")
}

impl Claim {
    pub fn new(
        keys: &Keys,
        user_id: Uuid,
        key: &str,
        fingerprint: [u8; 32],
    ) -> Result<Self, AppError> {
        let mut scope = user_id.as_bytes().to_vec();
        scope.extend_from_slice(key.as_bytes());
        // An HMAC-SHA256 output: the 32 bytes the cipher takes.
        let cipher =
            XChaCha20Poly1305::new_from_slice(&keys.idempotency_key(&scope)).map_err(|_| {
                AppError::Internal(anyhow::anyhow!("the sealing key has the wrong size"))
            })?;
        Ok(Claim(Arc::new(ClaimInner {
            user_id,
            key_hash: Sha256::digest(key.as_bytes()).into(),
            fingerprint,
            cipher,
            outcome: AtomicU8::new(0),
        })))
    }

    pub fn user_id(&self) -> Uuid {
        self.0.user_id
    }

    pub fn key_hash(&self) -> &[u8] {
        &self.0.key_hash
    }

    pub fn fingerprint(&self) -> &[u8] {
        &self.0.fingerprint
    }

    pub fn outcome(&self) -> Outcome {
        match self.0.outcome.load(Ordering::SeqCst) {
            1 => Outcome::Bound,
            2 => Outcome::Taken,
            _ => Outcome::Unbound,
        }
    }

    fn set(&self, outcome: Outcome) {
        let v = match outcome {
            Outcome::Unbound => 0,
            Outcome::Bound => 1,
            Outcome::Taken => 2,
        };
        self.0.outcome.store(v, Ordering::SeqCst);
    }

    /// What is bound into a seal besides its purpose: the row it belongs to.
    fn aad(&self, purpose: &[u8]) -> Vec<u8> {
        let mut aad = purpose.to_vec();
        aad.push(0);
        aad.extend_from_slice(self.0.user_id.as_bytes());
        aad.extend_from_slice(&self.0.key_hash);
        aad
    }

    /// `plain` encrypted and authenticated: a random nonce, then the ciphertext.
    pub fn seal(&self, purpose: &[u8], plain: &[u8]) -> Result<Vec<u8>, AppError> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let aad = self.aad(purpose);
        let sealed = self
            .0
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                AppError::Internal(anyhow::anyhow!("sealing an idempotent answer failed"))
            })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// What [`Claim::seal`] sealed with the same caller, key and purpose;
    /// `None` for anything else (or after the server's secret key changed).
    pub fn unseal(&self, purpose: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let aad = self.aad(purpose);
        self.0
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()
    }
}

/// Binds the request's Idempotency-Key, if it has one, to what it created.
/// Call in the effect's transaction, after its audit event and just before
/// it commits. When another request bound the key first, the claim is marked
/// taken and an error returned: the transaction must be dropped, and the
/// guard answers with the first request's answer.
pub async fn bind(
    conn: &mut PgConnection,
    origin: &Origin,
    created: Created<'_>,
) -> Result<(), AppError> {
    let Some(claim) = origin.idempotency.as_ref() else {
        return Ok(());
    };
    let sealed_secret = match created.secret() {
        Some(secret) => Some(claim.seal(SEALED_SECRET, secret.as_bytes())?),
        None => None,
    };
    let bound = cab_db::idempotency::bind(
        conn,
        &NewKey {
            user_id: claim.user_id(),
            key_hash: claim.key_hash(),
            fingerprint: claim.fingerprint(),
            entity_kind: created.kind(),
            entity_id: created.id(),
            sealed_secret: sealed_secret.as_deref(),
        },
        LIFETIME,
    )
    .await?;
    if bound {
        claim.set(Outcome::Bound);
        Ok(())
    } else {
        claim.set(Outcome::Taken);
        Err(AppError::Conflict(Denial::new(
            "idempotency_key_in_use",
            "Another request with this Idempotency-Key did this first.",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(key: &str) -> Claim {
        let keys = Keys::new(b"a secret key that is long enough for these tests");
        Claim::new(&keys, Uuid::nil(), key, fingerprint("POST", "/x", b"{}")).unwrap()
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(check_key(b"a").is_ok());
        assert!(check_key(b"8e03978e-40d5-43e8-bc93-6894a57f9324").is_ok());
        assert!(check_key("~".repeat(255).as_bytes()).is_ok());
        for bad in [
            &b""[..],
            "x".repeat(256).as_bytes(),
            b"two words",
            b"tab\there",
            b"new\nline",
            "caf\u{e9}".as_bytes(),
            b"\x7f",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_seal_opens_only_for_its_caller_key_and_purpose() {
        let a = claim("key-1");
        let sealed = a.seal(SEALED_SECRET, b"cab_secret").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"cab_secret"));
        assert_eq!(
            claim("key-1").unseal(SEALED_SECRET, &sealed).as_deref(),
            Some(&b"cab_secret"[..])
        );
        assert_eq!(claim("key-2").unseal(SEALED_SECRET, &sealed), None);
        assert_eq!(a.unseal(SEALED_RESPONSE, &sealed), None);
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(a.unseal(SEALED_SECRET, &tampered), None);
    }

    #[test]
    fn the_fingerprint_tells_method_path_and_body_apart() {
        let f = fingerprint("POST", "/api/v1/changes", b"{}");
        assert_eq!(f, fingerprint("POST", "/api/v1/changes", b"{}"));
        assert_ne!(f, fingerprint("POST", "/api/v1/changes", b"{ }"));
        assert_ne!(f, fingerprint("POST", "/api/v1/templates", b"{}"));
        assert_ne!(f, fingerprint("PUT", "/api/v1/changes", b"{}"));
    }
}
