//! The process-wide rustls crypto provider.
//!
//! The workspace has one TLS crypto backend, ring. reqwest (operator CLI, PULL client) and
//! async-nats both use rustls, and rustls needs a process default when more than one provider
//! could be meant; install it once at start-up, before any TLS client or server is built.

/// Install ring as the process-wide rustls crypto provider. Idempotent: calling it again, or
/// after another part of the process installed a provider, changes nothing.
pub fn install_default_provider() {
    // `Err` means a provider is installed already: the one we want, or one a caller chose.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_is_harmless_and_leaves_a_default() {
        install_default_provider();
        install_default_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
