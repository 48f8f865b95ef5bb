//! The relay's HTTP server: ingest, health, readiness and metrics.
//!
//! [`run`] takes its listener and a shutdown token so tests bind port 0 and stop it when they
//! want. On shutdown the server stops accepting connections, lets in-flight requests (and so
//! their publishes) finish, flushes the NATS connection and returns. With `http.tls_cert_file`
//! and `http.tls_key_file` set, the listener speaks HTTPS only.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use shirase_proto::subject::NOTICE_STREAM;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::app::{AppState, ServeError, state};
use crate::config::Config;

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    crate::ingest::router(state.clone())
        .merge(ops)
        .merge(crate::operator::router(state))
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.client.connection_state() != async_nats::connection::State::Connected {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to NATS\n".to_owned(),
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), state.js.get_stream(NOTICE_STREAM)).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stream {NOTICE_STREAM} not available: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "JetStream did not answer within 2s\n".to_owned(),
        ),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    crate::operator::api::refresh_metrics(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Serve until `shutdown` is cancelled, then finish in-flight requests and return.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    // Before connecting anywhere: a bad certificate is a configuration error to fix now.
    let tls = config.http.tls.as_ref().map(|t| t.load()).transpose()?;
    let state = state(config).await?;
    let client = state.client.clone();
    let scheduler = state.config.maintenance.enabled.then(|| {
        crate::scheduler::spawn(
            state.config.clone(),
            state.js.clone(),
            state.metrics.clone(),
            shutdown.child_token(),
        )
    });
    let notifier = (state.config.notifier.enabled).then(|| {
        crate::notifier::spawn(
            state.config.notifier.clone(),
            state.js.clone(),
            shutdown.child_token(),
        )
    });
    let file_watchers = crate::file_watcher::spawn(
        state.config.clone(),
        state.js.clone(),
        state.publisher.clone(),
        shutdown.child_token(),
    );
    let watchers = crate::watcher::spawn(
        state.config.clone(),
        state.js.clone(),
        state.publisher.clone(),
        state.metrics.clone(),
        shutdown.child_token(),
    );
    tracing::info!(
        addr = %listener.local_addr()?,
        https = tls.is_some(),
        "shirase-relay serving"
    );
    shirase_service::https::serve(listener, router(state), tls, shutdown.clone()).await?;
    if let Some(task) = scheduler {
        // The scheduler's token is a child of `shutdown`: it is stopping too; let it release
        // its lease so another replica takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    for task in watchers.into_iter().chain(file_watchers) {
        // Each releases its lease on the way out.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(task) = notifier {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    // Requests have all been answered; make sure nothing we wrote is left in the client buffer.
    let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    tracing::info!("shirase-relay stopped");
    Ok(())
}
