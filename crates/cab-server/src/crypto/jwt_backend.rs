//! The signing backend behind `jsonwebtoken`: HMAC with SHA-2, on the same
//! `hmac` and `sha2` crates the rest of [`crate::crypto`] uses, and EdDSA
//! over Ed25519 (`ed25519-dalek`) for deployment authorizations.
//!
//! `jsonwebtoken` is built without its bundled backends (`rust_crypto`,
//! `aws_lc_rs`): they would compile in RSA and ECDSA as well, and with them
//! the `rsa` crate (RUSTSEC-2023-0071), none of which CAB uses. Sessions are
//! signed and verified with HS256 only ([`super::Keys`] pins it in
//! validation); HS384 and HS512 are the same code with another hash and are
//! kept so that tests can forge tokens with them. Deployment authorizations
//! are EdDSA only ([`super::deploy`] pins it). Every other algorithm is an
//! error.
//!
//! An Ed25519 signing key is passed as its raw 32-byte seed (through
//! `EncodingKey::from_ed_der`, which keeps the bytes as they are), a public
//! key as its raw 32 bytes (`DecodingKey::from_ed_components`, the JWK `x`).

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::{Sha256, Sha384, Sha512};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    // CAB reads no JSON Web Keys; these panic if ever called.
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes this backend `jsonwebtoken`'s process-wide one. Called by
/// [`super::Keys::new`], and every token is signed or checked through a
/// `Keys`, so it is in place before the first use. Calling it again is
/// harmless: the first installation stays.
pub(super) fn install() {
    let _already_installed = PROVIDER.install_default();
}

/// One HMAC key, ready to sign or verify for one algorithm.
struct HmacJwt<M> {
    algorithm: Algorithm,
    mac: M,
}

impl<M: Mac + KeyInit> HmacJwt<M> {
    fn new(algorithm: Algorithm, secret: &[u8]) -> Result<Self> {
        let mac =
            <M as KeyInit>::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat)?;
        Ok(Self { algorithm, mac })
    }
}

impl<M: Mac + Clone> HmacJwt<M> {
    fn keyed(&self, msg: &[u8]) -> M {
        let mut mac = self.mac.clone();
        mac.update(msg);
        mac
    }
}

impl<M: Mac + Clone> Signer<Vec<u8>> for HmacJwt<M> {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.keyed(msg).finalize().into_bytes().to_vec())
    }
}

impl<M: Mac + Clone> Verifier<Vec<u8>> for HmacJwt<M> {
    fn verify(&self, msg: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // `verify_slice` compares in constant time.
        self.keyed(msg)
            .verify_slice(tag)
            .map_err(|_| signature::Error::new())
    }
}

impl<M: Mac + Clone> JwtSigner for HmacJwt<M> {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl<M: Mac + Clone> JwtVerifier for HmacJwt<M> {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// An Ed25519 key pair's signing half.
struct Ed25519Signer(SigningKey);

impl Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// An Ed25519 public key.
struct Ed25519Verifier(VerifyingKey);

impl Verifier<Vec<u8>> for Ed25519Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let sig = Signature::from_slice(sig)?;
        // Strict: no malleable signatures, no small-order keys.
        self.0.verify_strict(msg, &sig)
    }
}

impl JwtVerifier for Ed25519Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *algorithm == Algorithm::EdDSA {
        if key.family() != AlgorithmFamily::Ed {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        let seed: &[u8; 32] = key
            .inner()
            .try_into()
            .map_err(|_| ErrorKind::InvalidEddsaKey)?;
        return Ok(Box::new(Ed25519Signer(SigningKey::from_bytes(seed))));
    }
    let secret = key.try_get_hmac_secret()?;
    Ok(match *algorithm {
        Algorithm::HS256 => Box::new(HmacJwt::<Hmac<Sha256>>::new(*algorithm, secret)?),
        Algorithm::HS384 => Box::new(HmacJwt::<Hmac<Sha384>>::new(*algorithm, secret)?),
        Algorithm::HS512 => Box::new(HmacJwt::<Hmac<Sha512>>::new(*algorithm, secret)?),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    })
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm == Algorithm::EdDSA {
        if key.family() != AlgorithmFamily::Ed {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        let public: &[u8; 32] = key
            .as_bytes()
            .try_into()
            .map_err(|_| ErrorKind::InvalidEddsaKey)?;
        let public = VerifyingKey::from_bytes(public).map_err(|_| ErrorKind::InvalidEddsaKey)?;
        return Ok(Box::new(Ed25519Verifier(public)));
    }
    let secret = key.try_get_hmac_secret()?;
    Ok(match *algorithm {
        Algorithm::HS256 => Box::new(HmacJwt::<Hmac<Sha256>>::new(*algorithm, secret)?),
        Algorithm::HS384 => Box::new(HmacJwt::<Hmac<Sha384>>::new(*algorithm, secret)?),
        Algorithm::HS512 => Box::new(HmacJwt::<Hmac<Sha512>>::new(*algorithm, secret)?),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn hs256_matches_rfc_4231_test_case_2() {
        // RFC 4231 4.3: HMAC-SHA-256 under the key "Jefe".
        let msg = b"what do ya want for nothing?";
        let signer = new_signer(&Algorithm::HS256, &EncodingKey::from_secret(b"Jefe")).unwrap();
        let tag = signer.try_sign(msg).unwrap();
        assert_eq!(
            hex::encode(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let verifier = new_verifier(&Algorithm::HS256, &DecodingKey::from_secret(b"Jefe")).unwrap();
        assert!(verifier.verify(msg, &tag).is_ok());
        assert!(
            verifier
                .verify(b"what do ya want for nothing!", &tag)
                .is_err()
        );
        assert!(verifier.verify(msg, &tag[..31].to_vec()).is_err());
    }

    #[test]
    fn only_hmac_and_eddsa_algorithms_are_served() {
        let enc = EncodingKey::from_secret(b"k");
        let dec = DecodingKey::from_secret(b"k");
        for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256] {
            let err = new_signer(&alg, &enc).err().unwrap();
            assert_eq!(err.kind(), &ErrorKind::InvalidAlgorithm, "{alg:?}");
            let err = new_verifier(&alg, &dec).err().unwrap();
            assert_eq!(err.kind(), &ErrorKind::InvalidAlgorithm, "{alg:?}");
        }
        // A key that is not an HMAC secret is refused even for HS256.
        let rsa = DecodingKey::from_rsa_raw_components(b"\x01", b"\x01");
        let err = new_verifier(&Algorithm::HS256, &rsa).err().unwrap();
        assert_eq!(err.kind(), &ErrorKind::InvalidKeyFormat);
        // An HMAC secret is never taken for an Ed25519 key, whatever its length.
        let secret = [7u8; 32];
        let err = new_signer(&Algorithm::EdDSA, &EncodingKey::from_secret(&secret))
            .err()
            .unwrap();
        assert_eq!(err.kind(), &ErrorKind::InvalidKeyFormat);
        let err = new_verifier(&Algorithm::EdDSA, &DecodingKey::from_secret(&secret))
            .err()
            .unwrap();
        assert_eq!(err.kind(), &ErrorKind::InvalidKeyFormat);
    }

    #[test]
    fn tokens_round_trip_through_jsonwebtoken() {
        install();
        let key = b"a key for this test only";
        let claims = json!({ "sub": "someone", "exp": 4_102_444_800_i64 });
        let sign = |alg| {
            let header = jsonwebtoken::Header::new(alg);
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).unwrap()
        };
        let hs256 = jsonwebtoken::Validation::new(Algorithm::HS256);
        let decoded = jsonwebtoken::decode::<Value>(
            sign(Algorithm::HS256),
            &DecodingKey::from_secret(key),
            &hs256,
        )
        .unwrap();
        assert_eq!(decoded.claims, claims);
        let err = jsonwebtoken::decode::<Value>(
            sign(Algorithm::HS512),
            &DecodingKey::from_secret(key),
            &hs256,
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), &ErrorKind::InvalidAlgorithm);
        let err = jsonwebtoken::decode::<Value>(
            sign(Algorithm::HS256),
            &DecodingKey::from_secret(b"another key"),
            &hs256,
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), &ErrorKind::InvalidSignature);
    }
}
