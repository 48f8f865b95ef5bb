//! Shirase relay (skeleton): the HTTP ingest, provisioning and operator tools land with the
//! relay issue. Nothing here works yet, and the binary says so.
