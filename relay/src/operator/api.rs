//! The operator API routes (`/v1/ops/...`) and the status page (`/status`).
//!
//! | route | role | |
//! |---|---|---|
//! | `GET /v1/ops/status` | viewer | [`super::status::Status`] |
//! | `POST /v1/ops/replay` | operator | [`super::replay::ReplayRequest`] → [`super::replay::ReplayResult`] |
//! | `POST /v1/ops/resync` | operator | [`super::resync::ResyncRequest`] → [`super::resync::ResyncResult`] |
//! | `GET /v1/ops/dlq?subscriber=&provider=&interface=&limit=` | viewer | [`DlqQuery`] → list |
//! | `GET /v1/ops/dlq/{seq}` | viewer | one dead letter with its body |
//! | `POST /v1/ops/dlq/redrive`, `POST /v1/ops/dlq/purge` | operator | [`super::dlq::DlqFilter`] |
//! | `POST /v1/ops/pause`, `POST /v1/ops/resume` | operator | [`super::pause::PauseRequest`] |
//! | `GET /status` | none (static page; it asks for a token) | HTML |

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Html;
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::audit::AuditResult;
use super::auth::{Actor, OperatorAuth};
use super::dlq::{self, DlqFilter};
use super::error::OpsError;
use super::{audit, pause, replay, resync, status};
use crate::app::AppState;
use crate::metrics::ActionLabel;

/// The status page (self-contained: inline CSS and JS, no external resources).
pub const STATUS_PAGE: &str = include_str!("status.html");

/// State of the operator routes.
#[derive(Debug)]
pub struct OpsState {
    app: Arc<AppState>,
    auth: OperatorAuth,
    failed_logins: audit::LoginAuditBudget,
}

/// The operator routes, to merge into the relay's router.
pub fn router(app: Arc<AppState>) -> Router {
    let auth = OperatorAuth::new(&app.config.operators);
    let failed_logins = audit::LoginAuditBudget::new(app.config.ops.failed_login_audit_per_minute);
    let state = Arc::new(OpsState {
        app,
        auth,
        failed_logins,
    });
    Router::new()
        .route(
            "/status",
            get(|| async { ([(header::CACHE_CONTROL, "no-store")], Html(STATUS_PAGE)) }),
        )
        .route("/v1/ops/status", get(get_status))
        .route("/v1/ops/replay", post(post_replay))
        .route("/v1/ops/resync", post(post_resync))
        .route("/v1/ops/dlq", get(get_dlq))
        .route("/v1/ops/dlq/{seq}", get(get_dlq_one))
        .route("/v1/ops/dlq/redrive", post(post_redrive))
        .route("/v1/ops/dlq/purge", post(post_purge))
        .route("/v1/ops/pause", post(post_pause))
        .route("/v1/ops/resume", post(post_resume))
        .with_state(state)
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, OpsError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // serde names the field (`missing field `subscriber``, `unknown field `form_time``).
        let mut err = OpsError::invalid("", format!("request body: {e}"));
        err.field = Some(String::new());
        err
    })
}

impl OpsState {
    /// Run `f` as an audited action of the operator role.
    async fn action<T, F>(
        &self,
        headers: &HeaderMap,
        action: &str,
        params: serde_json::Value,
        f: F,
    ) -> Result<Json<T>, OpsError>
    where
        T: Serialize,
        F: AsyncFnOnce(&Actor) -> Result<T, OpsError>,
    {
        let actor = self.login(headers, action).await?;
        let outcome = match actor.require_operator(action) {
            Err(e) => Err((AuditResult::Denied, e)),
            Ok(()) => f(&actor).await.map_err(|e| (AuditResult::Error, e)),
        };
        let (result, detail) = match &outcome {
            Ok(v) => (AuditResult::Ok, serde_json::to_value(v).unwrap_or_default()),
            Err((r, e)) => (*r, serde_json::json!({ "error": e.message })),
        };
        self.app
            .metrics
            .operator
            .operator_actions
            .get_or_create(&ActionLabel {
                action: action.to_owned(),
                result: result.as_str().to_owned(),
            })
            .inc();
        let rec = audit::record(&actor.name, action, params, result, detail);
        tracing::info!(actor = %actor.name, action, result = result.as_str(), audit_id = %rec.id, "operator action");
        if let Err(e) = audit::write(&self.app.js, &rec).await {
            tracing::error!(action, audit_id = %rec.id, "audit record not written: {e}");
            if outcome.is_ok() {
                return Err(OpsError::nats(
                    "the action was done but its audit record was not written",
                    e,
                ));
            }
        }
        outcome.map(Json).map_err(|(_, e)| e)
    }

    async fn viewer(&self, headers: &HeaderMap, action: &str) -> Result<Actor, OpsError> {
        self.login(headers, action).await
    }

    /// Authenticate; a refused token is counted and audited as action `login` (actor
    /// `(unknown)`, the action tried and why, never the token), within the audit budget so a
    /// flood cannot fill SHIRASE_AUDIT.
    async fn login(&self, headers: &HeaderMap, action: &str) -> Result<Actor, OpsError> {
        let err = match self.auth.authenticate(headers) {
            Ok(actor) => return Ok(actor),
            Err(e) => e,
        };
        let m = &self.app.metrics.operator;
        m.operator_login_failures.inc();
        if !self.failed_logins.take(std::time::Instant::now()) {
            m.operator_login_failures_unaudited.inc();
            return Err(err);
        }
        let rec = audit::record(
            audit::UNKNOWN_ACTOR,
            "login",
            serde_json::json!({ "action": action }),
            AuditResult::Denied,
            serde_json::json!({ "error": err.message }),
        );
        tracing::info!(action, audit_id = %rec.id, "operator login refused");
        if let Err(e) = audit::write(&self.app.js, &rec).await {
            tracing::warn!(audit_id = %rec.id, "failed login not audited: {e}");
        }
        Err(err)
    }
}

async fn get_status(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
) -> Result<Json<status::Status>, OpsError> {
    s.viewer(&headers, "status").await?;
    s.app.metrics.operator.status_collections.inc();
    let st = status::collect(&s.app.js, &s.app.config).await?;
    refresh_gauges(&s.app, &st);
    Ok(Json(st))
}

async fn post_replay(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Json<replay::ReplayResult>, OpsError> {
    let req: replay::ReplayRequest = body(&b)?;
    let params = serde_json::to_value(&req).unwrap_or_default();
    s.action(&headers, "replay", params, async |_| {
        let plan = replay::Plan::new(&s.app.config, &req)?;
        replay::run(&s.app.js, &plan).await
    })
    .await
}

async fn post_resync(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Json<resync::ResyncResult>, OpsError> {
    let req: resync::ResyncRequest = body(&b)?;
    let params = serde_json::to_value(&req).unwrap_or_default();
    s.action(&headers, "resync", params, async |_| {
        resync::run(&s.app.js, &s.app.config, &req).await
    })
    .await
}

/// The query of `GET /v1/ops/dlq`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqQuery {
    /// Only this subscriber.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    /// Only this provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Only this interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// At most this many (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

async fn get_dlq(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
    q: Result<Query<DlqQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<dlq::DlqEntry>>, OpsError> {
    s.viewer(&headers, "dlq-list").await?;
    let Query(q) = q.map_err(|e| OpsError::invalid("", format!("query: {e}")))?;
    let f = DlqFilter {
        subscriber: q.subscriber,
        provider: q.provider,
        interface: q.interface,
        seq: None,
        yes: false,
    };
    Ok(Json(
        dlq::list(&s.app.js, &s.app.config, &f, q.limit.unwrap_or(1000)).await?,
    ))
}

async fn get_dlq_one(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
    Path(seq): Path<String>,
) -> Result<Json<dlq::DlqEntry>, OpsError> {
    s.viewer(&headers, "dlq-show").await?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| OpsError::invalid("seq", format!("{seq:?} is not a DLQ sequence number")))?;
    Ok(Json(dlq::show(&s.app.js, seq).await?))
}

async fn post_redrive(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Json<dlq::DlqActionResult>, OpsError> {
    let f: DlqFilter = body(&b)?;
    let params = serde_json::to_value(&f).unwrap_or_default();
    s.action(&headers, "dlq-redrive", params, async |_| {
        dlq::redrive(&s.app.js, &s.app.config, &f).await
    })
    .await
}

async fn post_purge(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Json<dlq::DlqActionResult>, OpsError> {
    let f: DlqFilter = body(&b)?;
    let params = serde_json::to_value(&f).unwrap_or_default();
    s.action(&headers, "dlq-purge", params, async |_| {
        dlq::purge(&s.app.js, &s.app.config, &f).await
    })
    .await
}

async fn post_pause(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Json<pause::PauseResult>, OpsError> {
    let req: pause::PauseRequest = body(&b)?;
    let params = serde_json::to_value(&req).unwrap_or_default();
    s.action(&headers, "pause", params, async |a| {
        pause::pause(&s.app.js, &s.app.config, &a.name, &req).await
    })
    .await
}

async fn post_resume(
    State(s): State<Arc<OpsState>>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Json<pause::PauseResult>, OpsError> {
    let req: pause::PauseRequest = body(&b)?;
    let params = serde_json::to_value(&req).unwrap_or_default();
    s.action(&headers, "resume", params, async |_| {
        pause::resume(&s.app.js, &s.app.config, &req).await
    })
    .await
}

/// Set the consumer, checkpoint and dead-letter gauges from a snapshot.
pub fn refresh_gauges(app: &AppState, st: &status::Status) {
    use crate::metrics::{CheckpointLabel, ConsumerLabel, SubscriberLabel};
    let m = &app.metrics.operator;
    // Every replica reports the watcher's lag from its checkpoint, not only the lease holder.
    for w in &st.watched {
        if let Some(lag) = w.lag_secs {
            app.metrics
                .watcher
                .lag_seconds
                .get_or_create(&crate::metrics::WatchLabel {
                    provider: w.provider.clone(),
                    interface: w.interface.clone(),
                })
                .set(lag);
        }
    }
    for c in &st.consumers {
        let l = ConsumerLabel {
            subscriber: c.subscriber.clone(),
            provider: c.provider.clone(),
        };
        m.consumer_pending.get_or_create(&l).set(c.pending as i64);
        m.consumer_ack_pending
            .get_or_create(&l)
            .set(c.ack_pending as i64);
        m.consumer_redelivered
            .get_or_create(&l)
            .set(c.redelivered as i64);
        m.consumer_oldest_pending_seconds
            .get_or_create(&l)
            .set(c.oldest_pending_age_secs.unwrap_or(0.0));
        m.consumer_paused.get_or_create(&l).set(i64::from(c.paused));
        for k in &c.checkpoints {
            if let Some(age) = k.age_secs {
                m.checkpoint_age_seconds
                    .get_or_create(&CheckpointLabel {
                        subscriber: c.subscriber.clone(),
                        interface: k.interface.clone(),
                    })
                    .set(age);
            }
        }
    }
    for p in &st.providers {
        m.provider_in_maintenance
            .get_or_create(&crate::metrics::ProviderLabel {
                provider: p.business_id.clone(),
            })
            .set(i64::from(p.in_maintenance));
    }
    for s in &app.config.subscribers {
        let n = st
            .dlq
            .per_subscriber
            .get(s.id.as_str())
            .copied()
            .unwrap_or(0);
        m.dlq_messages
            .get_or_create(&SubscriberLabel {
                subscriber: s.id.to_string(),
            })
            .set(n as i64);
    }
}

/// Refresh the gauges (the relay's timer calls it every `ops.metrics_refresh`; bounded, so a
/// slow JetStream delays the next refresh, never a scrape).
pub async fn refresh_metrics(app: &AppState) {
    app.metrics.operator.status_collections.inc();
    let collect = status::collect(&app.js, &app.config);
    match tokio::time::timeout(std::time::Duration::from_secs(3), collect).await {
        Ok(Ok(st)) => refresh_gauges(app, &st),
        Ok(Err(e)) => tracing::debug!("operator gauges not refreshed: {e}"),
        Err(_) => {
            tracing::debug!("operator gauges not refreshed: JetStream did not answer within 3 s")
        }
    }
}
