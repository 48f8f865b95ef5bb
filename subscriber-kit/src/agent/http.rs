//! The agent's HTTP endpoints: `/healthz` (NATS connection state) and `/metrics`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub(super) async fn serve_http(
    l: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    m: Arc<Metrics>,
    c: async_nats::Client,
    stop: CancellationToken,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let c = c.clone();
                async move {
                    if c.connection_state() == async_nats::connection::State::Connected {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "nats disconnected")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        );
    if let Err(e) = shirase_service::https::serve(l, app, tls, stop).await {
        tracing::error!("http listener failed: {e}");
    }
}
