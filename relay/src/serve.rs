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

/// All routes on one listener (`ops.listen` unset).
pub fn router(state: Arc<AppState>) -> Router {
    ingest_router(state.clone()).merge(ops_surface(state))
}

/// What `http.listen` serves when the operator surface has its own address: ingest, health
/// and readiness.
pub fn ingest_router(state: Arc<AppState>) -> Router {
    crate::ingest::router(state.clone()).merge(health(state))
}

/// The operator surface (`ops.listen`): operator API, status page, metrics, health.
pub fn ops_router(state: Arc<AppState>) -> Router {
    health(state.clone()).merge(ops_surface(state))
}

fn ops_surface(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(crate::operator::router(state))
}

fn health(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
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

/// The registry as it is: the gauges that need JetStream reads are kept fresh by
/// [`refresh_gauges`], so a scrape (however frequent, by whoever) reads nothing from JetStream.
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Collect the operator gauges now and then every `ops.metrics_refresh`, until `shutdown`.
fn refresh_gauges(
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.ops.metrics_refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => crate::operator::api::refresh_metrics(&state).await,
            }
        }
    })
}

/// Serve until `shutdown` is cancelled, then finish in-flight requests and return. The
/// operator surface is served on `listener` too unless `ops.listen` is set; then use
/// [`run_with_ops`] (or the binary, which binds it).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    run_with_ops(config, listener, None, shutdown).await
}

/// [`run`], with the operator surface on `ops_listener` when given (bound from `ops.listen`).
pub async fn run_with_ops(
    config: Config,
    listener: TcpListener,
    ops_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    // Before connecting anywhere: a bad certificate is a configuration error to fix now.
    let tls = config.http.tls.as_ref().map(|t| t.load()).transpose()?;
    let state = state(config).await?;
    let refresher = refresh_gauges(state.clone(), shutdown.child_token());
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
    // Both listeners stop with `shutdown`, or together when one of them fails.
    let listeners = shutdown.child_token();
    let limits = state.config.http.limits;
    let body_timeout = state.config.http.body_timeout;
    let ops = match ops_listener {
        Some(l) => {
            tracing::info!(addr = %l.local_addr()?, https = tls.is_some(), "operator surface serving");
            let app =
                shirase_service::https::body_deadline(ops_router(state.clone()), body_timeout);
            Some(tokio::spawn(shirase_service::https::serve_with_limits(
                l,
                app,
                tls.clone(),
                limits,
                listeners.clone(),
            )))
        }
        None => None,
    };
    let app = if ops.is_some() {
        ingest_router(state.clone())
    } else {
        router(state.clone())
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        https = tls.is_some(),
        "shirase-relay serving"
    );
    let app = shirase_service::https::body_deadline(app, body_timeout);
    let served =
        shirase_service::https::serve_with_limits(listener, app, tls, limits, listeners.clone())
            .await;
    listeners.cancel();
    if let Some(ops) = ops {
        match ops.await {
            Ok(r) => r?,
            Err(e) => tracing::error!("operator listener task failed: {e}"),
        }
    }
    served?;
    let _ = tokio::time::timeout(Duration::from_secs(5), refresher).await;
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
