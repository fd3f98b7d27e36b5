//! Test harness shared by the integration tests: real tar layers, a real registry (with token
//! issuer, fault proxy and redirect target) and a pusher that speaks the registry API.
#![allow(dead_code)]

pub mod cli;
pub mod layers;
pub mod push;
pub mod registry;
pub mod tmux;
