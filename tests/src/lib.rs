//! Shirase's test support, reference provider and benchmarks.
//!
//! Module map:
//! - [`harness`]: launches real `nats-server` processes (single server with JetStream on a random
//!   port and a temp store, restart on the same port and store, a 3-node cluster on loopback),
//!   cleaned up on `Drop`. Never a mock of NATS.
//! - [`provider_sim`]: `provider-sim`, the reference PULL API simulator (docs/pull-api.md): a
//!   seeded population, history rows, a change generator that emits notices, fault injection.
//!   The crate `shirase-provider-sim` (`tests/provider-sim/`), re-exported under this path.
//!
//! The integration tests live in `tests/it/` (one binary, one module per area).

pub mod bench;
pub mod harness;

pub use shirase_provider_sim as provider_sim;
