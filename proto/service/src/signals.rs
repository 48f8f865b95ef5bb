//! Waiting for the signal that stops a service.

/// Resolve on SIGTERM (what systemd, Kubernetes and `docker stop` send) or SIGINT (Ctrl-C).
/// Where SIGTERM cannot be watched (not Unix, or the handler cannot be installed), on Ctrl-C
/// only.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
