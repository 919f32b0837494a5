//! Signed deployment authorizations: an EdDSA (Ed25519) JWS that a pipeline
//! carries from the gate to its deployment step, checkable offline against
//! the published key set (a JWK set, RFC 8037).
//!
//! The private half of each key is kept sealed (XChaCha20-Poly1305 under a
//! key derived from the server's secret key, bound to the key id) and is
//! opened only to sign; it is never shown or logged. Retired public keys
//! stay published, so an authorization signed just before a rotation can
//! still be checked.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Keys;

/// The audience of deployment authorizations.
pub const AUD_DEPLOY: &str = "cab-deploy";
/// Their issuer.
pub const ISSUER: &str = "cab";

/// What an authorization says: which deployment, of what, to where, for
/// whom, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployClaims {
    pub iss: String,
    pub aud: String,
    /// The deployment's id.
    pub sub: Uuid,
    /// The authorization's own id: it starts a deployment once.
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// The change, as people name it (CHG-12).
    pub change: String,
    pub change_id: Uuid,
    pub revision: i32,
    /// The environment's key (prod).
    pub environment: String,
    /// The artifact's digest (sha256:…).
    pub digest: String,
    /// The person it was authorized for.
    pub initiator: String,
    pub initiator_id: Uuid,
    /// Authorized by break-glass, outside the usual rules.
    #[serde(default)]
    pub break_glass: bool,
}

/// A signing key as it is kept: id, public key, sealed private key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub public_key: Vec<u8>,
    pub sealed_private: Vec<u8>,
}

/// One published public key (RFC 8037's OKP key type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// The published key set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwk {
    pub fn ed25519(kid: &str, public_key: &[u8]) -> Self {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(public_key),
            kid: kid.to_owned(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }
}

fn seal_aad(kid: &str) -> Vec<u8> {
    let mut aad = b"cab deployment signing key\0".to_vec();
    aad.extend_from_slice(kid.as_bytes());
    aad
}

fn cipher(keys: &Keys) -> anyhow::Result<XChaCha20Poly1305> {
    XChaCha20Poly1305::new_from_slice(&keys.signing_seal_key())
        .map_err(|_| anyhow::anyhow!("the signing-key seal has the wrong length"))
}

/// A new key pair, its private half sealed.
#[tracing::instrument(skip_all)]
pub fn generate(keys: &Keys, now: DateTime<Utc>) -> anyhow::Result<StoredKey> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(seed.as_mut());
    let signing = SigningKey::from_bytes(&seed);
    let public = signing.verifying_key().to_bytes();
    let mut id = [0u8; 6];
    OsRng.fill_bytes(&mut id);
    let kid = format!("{}-{}", now.format("%Y%m%d"), hex::encode(id));
    let sealed_private = seal(keys, &seal_aad(&kid), seed.as_slice())?;
    Ok(StoredKey {
        kid,
        public_key: public.to_vec(),
        sealed_private,
    })
}

/// Whether this server's secret key opens the stored key (it does not
/// once the secret key was changed).
pub fn opens(keys: &Keys, key: &StoredKey) -> bool {
    open_seed(keys, key).is_ok()
}

/// Signs `claims` with the stored key.
#[tracing::instrument(skip_all)]
pub fn sign(keys: &Keys, key: &StoredKey, claims: &DeployClaims) -> anyhow::Result<String> {
    let seed = open_seed(keys, key)?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    Ok(jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_der(seed.as_slice()),
    )?)
}

/// The private half of a stored key, unsealed.
fn open_seed(keys: &Keys, key: &StoredKey) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    open_sealed(keys, &seal_aad(&key.kid), &key.sealed_private).map_err(|_| {
        anyhow::anyhow!(
            "the signing key {} cannot be opened (was the server's secret key changed? run `cab keys rotate`)",
            key.kid
        )
    })
}

/// Seals a private key under the server's secret key, bound to `aad` (what
/// the key is for, and its id): a random nonce, then the ciphertext.
pub(super) fn seal(keys: &Keys, aad: &[u8], secret: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher(keys)?
        .encrypt(&XNonce::from(nonce), Payload { msg: secret, aad })
        .map_err(|_| anyhow::anyhow!("sealing a private key failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal`] sealed with the same `aad`; an error when it was
/// sealed under another secret key, or for another purpose or id.
pub(super) fn open_sealed(
    keys: &Keys,
    aad: &[u8],
    sealed: &[u8],
) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    if sealed.len() < 24 {
        anyhow::bail!("a sealed private key is too short");
    }
    let (nonce, ciphertext) = sealed.split_at(24);
    let nonce: [u8; 24] = nonce.try_into()?;
    Ok(zeroize::Zeroizing::new(
        cipher(keys)?
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("a sealed private key cannot be opened"))?,
    ))
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the authorization is not a well-formed token")]
    Malformed,
    #[error("the authorization was signed by a key CAB does not publish")]
    UnknownKey,
    #[error("the authorization's signature does not verify")]
    BadSignature,
    #[error("the authorization has expired")]
    Expired,
    #[error("the authorization is for {what} {found}, not {expected}")]
    Mismatch {
        what: &'static str,
        found: String,
        expected: String,
    },
}

/// Checks a token's signature against the key set and its expiry at `now`;
/// nothing else (what it is for is the caller's to compare).
pub fn verify(token: &str, jwks: &Jwks, now: DateTime<Utc>) -> Result<DeployClaims, TokenError> {
    super::install_backend();
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::BadSignature);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid && k.kty == "OKP" && k.crv == "Ed25519")
        .ok_or(TokenError::UnknownKey)?;
    let key = DecodingKey::from_ed_components(&jwk.x).map_err(|_| TokenError::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.algorithms = vec![Algorithm::EdDSA];
    validation.set_audience(&[AUD_DEPLOY]);
    validation.set_issuer(&[ISSUER]);
    // Expiry is checked below against `now`, with no leeway.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let data =
        jsonwebtoken::decode::<DeployClaims>(token, &key, &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidEddsaKey => TokenError::BadSignature,
                _ => TokenError::Malformed,
            }
        })?;
    if data.claims.exp <= now.timestamp() {
        return Err(TokenError::Expired);
    }
    Ok(data.claims)
}

/// Checks that the claims are for this environment and digest.
pub fn check_target(
    claims: &DeployClaims,
    environment: &str,
    digest: &str,
) -> Result<(), TokenError> {
    if claims.environment != environment {
        return Err(TokenError::Mismatch {
            what: "environment",
            found: claims.environment.clone(),
            expected: environment.to_owned(),
        });
    }
    if claims.digest != digest {
        return Err(TokenError::Mismatch {
            what: "artifact",
            found: claims.digest.clone(),
            expected: digest.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn claims(exp: i64) -> DeployClaims {
        DeployClaims {
            iss: ISSUER.into(),
            aud: AUD_DEPLOY.into(),
            sub: Uuid::new_v4(),
            jti: Uuid::new_v4(),
            iat: exp - 900,
            exp,
            change: "CHG-1".into(),
            change_id: Uuid::new_v4(),
            revision: 2,
            environment: "prod".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            initiator: "rita".into(),
            initiator_id: Uuid::new_v4(),
            break_glass: false,
        }
    }

    fn jwks_of(k: &StoredKey) -> Jwks {
        Jwks {
            keys: vec![Jwk::ed25519(&k.kid, &k.public_key)],
        }
    }

    #[test]
    fn a_signed_authorization_verifies_against_its_published_key() {
        let keys = Keys::new(b"a secret key of some length, for tests");
        let now = Utc::now();
        let k = generate(&keys, now).unwrap();
        let c = claims(now.timestamp() + 600);
        let token = sign(&keys, &k, &c).unwrap();
        assert_eq!(verify(&token, &jwks_of(&k), now).unwrap(), c);
        assert!(check_target(&c, "prod", &c.digest).is_ok());
        assert!(matches!(
            check_target(&c, "stage", &c.digest),
            Err(TokenError::Mismatch {
                what: "environment",
                ..
            })
        ));
        assert!(matches!(
            check_target(&c, "prod", "sha256:00"),
            Err(TokenError::Mismatch {
                what: "artifact",
                ..
            })
        ));
    }

    #[test]
    fn another_key_an_expiry_or_a_changed_claim_fails() {
        let keys = Keys::new(b"a secret key of some length, for tests");
        let now = Utc::now();
        let k = generate(&keys, now).unwrap();
        let other = generate(&keys, now).unwrap();
        let c = claims(now.timestamp() + 600);
        let token = sign(&keys, &k, &c).unwrap();
        // The other key published under this key's id.
        let forged = Jwks {
            keys: vec![Jwk::ed25519(&k.kid, &other.public_key)],
        };
        assert_eq!(verify(&token, &forged, now), Err(TokenError::BadSignature));
        assert_eq!(
            verify(&token, &jwks_of(&other), now),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            verify(&token, &jwks_of(&k), now + chrono::Duration::seconds(600)),
            Err(TokenError::Expired)
        );
        // A claim changed after signing.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        body["environment"] = "dev".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap());
        assert_eq!(
            verify(&parts.join("."), &jwks_of(&k), now),
            Err(TokenError::BadSignature)
        );
        // Another server's secret cannot open the key.
        let elsewhere = Keys::new(b"another secret key entirely, for tests");
        assert!(sign(&elsewhere, &k, &c).is_err());
    }

    #[test]
    fn an_hmac_token_under_the_public_key_is_refused() {
        // alg confusion: HS256 keyed with the public key's bytes.
        let keys = Keys::new(b"a secret key of some length, for tests");
        let now = Utc::now();
        let k = generate(&keys, now).unwrap();
        let c = claims(now.timestamp() + 600);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(k.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(&k.public_key)).unwrap();
        assert_eq!(
            verify(&token, &jwks_of(&k), now),
            Err(TokenError::BadSignature)
        );
    }
}
