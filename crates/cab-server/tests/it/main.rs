//! CAB's server tests: one binary (linking is the slow part), one module per
//! area. Every test gets its own database on the real PostgreSQL.

mod admin;
mod audit;
mod auth;
mod browser;
mod cli;
mod common;
mod csrf;
mod ops;
mod throttle;
