//! failoverd: a health-polling DNS failover agent with an embedded authoritative DNS server.
//!
//! Data flows one way: [`config`] → [`check`] probes → [`health`] (one writer) → [`decide`]
//! (pure) → [`dns::Zone`] swapped atomically → the DNS server ([`dns`]). [`agent`] wires them.

pub mod agent;
pub mod check;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod dashboard;
pub mod decide;
pub mod delegation;
pub mod demo;
pub mod dns;
pub mod events;
pub mod health;
pub mod history;
pub mod logging;
pub mod notify;
pub mod overrides;
pub mod serial;
pub mod state_dir;
pub mod status;
pub mod verify;
