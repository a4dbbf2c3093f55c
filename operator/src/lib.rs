//! The Stratus Kubernetes operator: custom resources ([`crd`]), what a StratusCluster
//! becomes ([`build`]), the controller that keeps it so ([`cluster`]), and the admin API
//! client it drives brokers with ([`admin`]); brokers are reached only through
//! `proto/admin.proto`.

pub mod admin;
pub mod build;
pub mod cluster;
pub mod context;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod quantity;
pub mod rebalance;
pub mod topic;
pub mod user;

#[cfg(test)]
mod tests;
