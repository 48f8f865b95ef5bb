//! Shirase subscriber kit (skeleton): the agent lands with the agent issue. Nothing here works
//! yet, and the binary says so.
