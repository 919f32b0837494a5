//! CAB's server tests: one binary (linking is the slow part), one module per
//! area. Every test gets its own database on the real PostgreSQL.

// A failed expectation in a test helper is a failed test: panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accessibility;
mod admin;
mod audit;
mod audit_trail;
mod auditor;
mod auth;
mod browser;
mod calendar;
mod calendar_pages;
mod changes;
mod checkpoints;
mod cli;
mod cli_gate;
mod common;
mod csrf;
mod db_roles;
mod decisions;
mod deployment_pages;
mod deployments;
mod evidence;
mod exceptions;
mod export_limits;
mod fail_closed;
mod flood;
mod freezes;
mod idempotency;
mod independence;
mod layers;
mod logs;
mod metrics;
mod openapi;
mod ops;
mod prometheus;
mod quickstart;
mod redirect;
mod release_pages;
mod release_phases;
mod releases;
mod review_pages;
mod reviews;
mod state_writer;
mod stress;
mod throttle;
mod two_person;
mod untrusted_text;
mod whole_check;
mod words;
