//! What every handler shares.

use std::sync::Arc;

use sqlx::PgPool;

use crate::assets::Assets;
use crate::config::Settings;
use crate::crypto::{Keys, Passwords};
use crate::db::health::DbHealth;
use crate::telemetry::Telemetry;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// Shared: the state is cloned for every request, the keys never are.
    pub keys: Arc<Keys>,
    pub passwords: Passwords,
    pub assets: Arc<Assets>,
    pub db_health: DbHealth,
    /// This process's request counters, for `/metrics`.
    pub telemetry: Arc<Telemetry>,
    /// The measures this server read last.
    pub measures: Arc<crate::metrics::Cache>,
    /// Slots for audit exports and evidence packs, each holding a database
    /// connection while it is read (`Settings::audit_exports`).
    pub exports: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(pool: PgPool, settings: Settings, secret_key: &[u8]) -> anyhow::Result<Self> {
        let hashing_slots = crate::crypto::hashing_slots();
        let assets = Assets::load(settings.static_dir.as_deref())?;
        Ok(Self {
            db_health: DbHealth::new(&pool),
            exports: Arc::new(tokio::sync::Semaphore::new(settings.audit_exports)),
            pool,
            keys: Arc::new(Keys::new(secret_key)),
            passwords: Passwords::new(hashing_slots)?,
            assets: Arc::new(assets),
            settings: Arc::new(settings),
            telemetry: Arc::default(),
            measures: Arc::default(),
        })
    }
}
