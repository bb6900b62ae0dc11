//! The HTTP serving skeleton of Rouse's sample apps, kept in `hello`, the smallest of them, so that
//! each sample's `main` holds only what is particular to it.
//!
//! A sample registers its shutdown signals first ([`shutdown_signal`]), binds the port Rouse gave it
//! ([`port_from_env`]), then hands a hyper service to [`serve`], which speaks HTTP/1.1 and h2c on the
//! same port and drains in-flight requests when the signal comes.

#![forbid(unsafe_code)]

mod server;

pub use server::{ACCEPTED, DRAIN_TIMEOUT, Drain, port_from_env, serve, shutdown_signal};
