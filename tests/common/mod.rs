//! Test harness shared by the integration tests: real tar layers, a real registry (with token
//! issuer, fault proxy and redirect target), a pusher that speaks the registry API, TLS
//! certificates made with openssl, and forward proxies.
#![allow(dead_code)]

pub mod certs;
pub mod cli;
pub mod layers;
pub mod proxy;
pub mod push;
pub mod registry;
pub mod tmux;
