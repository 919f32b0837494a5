//! The keys that sign the audit chain's checkpoints: Ed25519, the private
//! half sealed (XChaCha20-Poly1305 under the key that seals the deployment
//! signing keys, bound to this purpose and the key id), opened only to sign.

use ed25519_dalek::SigningKey;
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::Keys;
use super::deploy::{open_sealed, seal};

/// A checkpoint key as it is kept.
#[derive(Debug, Clone)]
pub struct SealedKey {
    /// The C2SP key id, hex.
    pub kid: String,
    /// The key name its notes carry.
    pub name: String,
    pub public_key: [u8; 32],
    pub sealed_private: Vec<u8>,
}

fn aad(kid: &str) -> Vec<u8> {
    let mut aad = b"cab audit checkpoint key\0".to_vec();
    aad.extend_from_slice(kid.as_bytes());
    aad
}

/// A new key pair named `name`, its private half sealed.
pub fn generate(keys: &Keys, name: &str) -> anyhow::Result<SealedKey> {
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(seed.as_mut());
    let public_key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let kid = hex::encode(cab_domain::checkpoint::key_id(name, &public_key));
    let sealed_private = seal(keys, &aad(&kid), seed.as_slice())?;
    Ok(SealedKey {
        kid,
        name: name.to_owned(),
        public_key,
        sealed_private,
    })
}

/// The signing key, opened with this server's secret key; an error when it
/// was sealed under another (the secret key was changed).
pub fn open(keys: &Keys, key: &SealedKey) -> anyhow::Result<SigningKey> {
    let seed = open_sealed(keys, &aad(&key.kid), &key.sealed_private).map_err(|_| {
        anyhow::anyhow!(
            "the checkpoint key {} cannot be opened with this server's secret key",
            key.kid
        )
    })?;
    let seed: [u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("a sealed checkpoint key has the wrong length"))?;
    let signing = SigningKey::from_bytes(&seed);
    if signing.verifying_key().to_bytes() != key.public_key {
        anyhow::bail!(
            "the checkpoint key {} does not match its public half",
            key.kid
        );
    }
    Ok(signing)
}
