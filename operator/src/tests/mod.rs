//! Unit tests that need more than one module: reconciles against a mocked API server.

mod fake;
mod plan;
mod reconcile;
