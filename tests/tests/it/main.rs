//! Integration tests against real nats-server processes. One binary, one module per area.

mod nats_harness;
