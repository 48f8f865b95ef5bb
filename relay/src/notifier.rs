//! The error notification function (エラー通知機能): alerts ([`shirase_proto::record::Alert`]) any
//! component publishes on `shirase.alert.<severity>.<component>` are read from the `SHIRASE_ALERTS` stream
//! through the durable consumer `shirase_notifier` (so alerts published while the relay is
//! down are delivered when it is back) and delivered by e-mail (SMTP with STARTTLS and
//! authentication, via lettre + rustls), webhook (JSON POST, retried with backoff) and command
//! (a configured program gets the alert JSON on stdin: for job-management tools).
//!
//! Repeated alerts of one key (code + provider + subscriber) are grouped: the first is
//! delivered at once, repeats within `group_window` are counted and delivered as one summary
//! (with `count`, `first_seen`, `last_seen`) when the window has passed. At most
//! `max_per_hour` deliveries leave per hour; what is held back stays grouped and goes out
//! when the budget allows. Every delivery carries severity, component, provider/subscriber,
//! first/last seen, count and a runbook hint.
//!
//! The consumer is created by the notifier itself (`DeliverPolicy::New` on first creation,
//! so a new relay does not mail the whole alert history). With several relay replicas each
//! alert reaches one replica (a shared durable consumer); grouping is per replica.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use shirase_proto::record::Alert;
use shirase_proto::subject::ALERT_STREAM;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::config::{
    CommandConfig, EmailConfig, NotifierConfig, RawCommand, RawEmail, RawNotifierConfig,
    RawWebhook, SmtpSecurity, WebhookConfig,
};

/// The notifier's durable consumer on `SHIRASE_ALERTS`.
pub const CONSUMER: &str = "shirase_notifier";

/// One delivery: the alert plus its grouping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delivery {
    /// `critical`, `warning`, `info`.
    pub severity: String,
    /// `agent`, `relay`, ...
    pub component: String,
    /// Machine-readable code.
    pub code: String,
    /// The latest message.
    pub message: String,
    /// Provider business id.
    pub provider: Option<String>,
    /// Subscriber.
    pub subscriber: Option<String>,
    /// Interface id.
    pub interface_id: Option<String>,
    /// First alert of the group (RFC 3339).
    pub first_seen: String,
    /// Latest alert of the group.
    pub last_seen: String,
    /// Alerts in the group.
    pub count: u64,
    /// What to do.
    pub runbook: String,
}

/// The built-in runbook hint of an alert code.
pub fn runbook_hint(code: &str, provider: Option<&str>) -> String {
    let p = provider.unwrap_or("?");
    match code {
        "provider_unreachable" => format!(
            "Check the operating status (稼働状況) of provider {p} with its vendor. Notices wait in JetStream; the agents pull them when it answers, and a recovery message follows. docs/operations.md#alerts"
        ),
        "provider_recovered" => format!("Provider {p} answers again. Nothing to do; watch the consumers' num_pending return to 0."),
        "consumer_stalled" => "Notices are not finishing: check the provider's PULL API, the sink and the agent's log. docs/operations.md#alerts".into(),
        "dead_letter" | "max_deliver" | "permanent_error" | "bisect_exhausted" => {
            "Inspect SHIRASE_DLQ (shirase-relay dlq), fix the cause, then replay. docs/operations.md#dead-letters".into()
        }
        "unauthorized" => format!("Provider {p} refused the agent's credentials: check client_id / client_secret_file."),
        _ => "See docs/operations.md#alerts for this code.".into(),
    }
}

struct Group {
    first: Delivery,
    first_seen: String,
    last: Alert,
    last_seen: String,
    count: u64,
    unsent: u64,
    last_sent: Option<Instant>,
}

/// Grouping and rate limiting, without I/O (so it can be tested with paused time).
#[derive(Default)]
pub struct Grouper {
    groups: HashMap<String, Group>,
    sent: std::collections::VecDeque<Instant>,
}

impl std::fmt::Debug for Grouper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouper")
            .field("groups", &self.groups.len())
            .finish()
    }
}

fn delivery_of(a: &Alert) -> Delivery {
    let runbook = a
        .runbook
        .clone()
        .unwrap_or_else(|| runbook_hint(&a.code, a.provider.as_deref()));
    let time = a.time.to_string();
    Delivery {
        severity: a.severity.as_str().to_owned(),
        component: a.component.clone(),
        code: a.code.clone(),
        message: a.message.clone(),
        provider: a.provider.clone(),
        subscriber: Some(a.subscriber.clone()),
        interface_id: a.interface_id.clone(),
        first_seen: time.clone(),
        last_seen: time,
        count: 1,
        runbook,
    }
}

impl Grouper {
    /// The grouping key: kind + provider + subscriber.
    pub fn key(a: &Alert) -> String {
        format!(
            "{}/{}/{}",
            a.code,
            a.provider.as_deref().unwrap_or_default(),
            a.subscriber
        )
    }

    fn budget(&mut self, now: Instant, max_per_hour: u32) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            self.sent.pop_front();
        }
        self.sent.len() < max_per_hour as usize
    }

    /// An alert arrived: returns the delivery to make now, if any.
    pub fn offer(
        &mut self,
        alert: &Alert,
        now: Instant,
        window: Duration,
        max_per_hour: u32,
    ) -> Option<Delivery> {
        let key = Self::key(alert);
        let d = delivery_of(alert);
        let g = self.groups.entry(key.clone()).or_insert_with(|| Group {
            first_seen: d.first_seen.clone(),
            first: d.clone(),
            last: alert.clone(),
            last_seen: d.last_seen.clone(),
            count: 0,
            unsent: 0,
            last_sent: None,
        });
        g.count += 1;
        g.unsent += 1;
        g.last = alert.clone();
        g.last_seen = d.last_seen.clone();
        let due = g.last_sent.is_none_or(|t| now.duration_since(t) >= window);
        if due && self.budget(now, max_per_hour) {
            return self.take(&key, now);
        }
        None
    }

    /// Groups whose window has passed with alerts not yet delivered, as far as the hourly
    /// budget allows.
    pub fn due(&mut self, now: Instant, window: Duration, max_per_hour: u32) -> Vec<Delivery> {
        let keys: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                g.unsent > 0 && g.last_sent.is_none_or(|t| now.duration_since(t) >= window)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if !self.budget(now, max_per_hour) {
                break;
            }
            out.extend(self.take(&k, now));
        }
        // Forget quiet groups so the map does not grow forever.
        self.groups.retain(|_, g| {
            g.unsent > 0
                || g.last_sent
                    .is_none_or(|t| now.duration_since(t) < window * 2)
        });
        out
    }

    fn take(&mut self, key: &str, now: Instant) -> Option<Delivery> {
        let g = self.groups.get_mut(key)?;
        let mut d = delivery_of(&g.last);
        d.first_seen = g.first_seen.clone();
        d.last_seen = g.last_seen.clone();
        d.count = g.unsent;
        if d.message.is_empty() {
            d.message = g.first.message.clone();
        }
        g.unsent = 0;
        g.last_sent = Some(now);
        self.sent.push_back(now);
        Some(d)
    }
}

/// What kind of delivery failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyErrorKind {
    /// SMTP.
    Email,
    /// Webhook.
    Webhook,
    /// Command.
    Command,
    /// JetStream.
    Server,
}

/// A delivery failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct NotifyError {
    kind: NotifyErrorKind,
    what: String,
    message: String,
}

impl NotifyError {
    /// The kind.
    pub fn kind(&self) -> NotifyErrorKind {
        self.kind
    }
    fn new(
        kind: NotifyErrorKind,
        what: impl Into<String>,
        message: impl std::fmt::Display,
    ) -> Self {
        Self {
            kind,
            what: what.into(),
            message: message.to_string(),
        }
    }
}

/// Delivers alerts to the configured sinks.
#[derive(Debug)]
pub struct Notifier {
    config: NotifierConfig,
    http: reqwest::Client,
    grouper: std::sync::Mutex<Grouper>,
    /// Deliveries made, per sink (`email`, `webhook`, `command`), for tests and metrics.
    pub delivered: Arc<std::sync::Mutex<HashMap<&'static str, u64>>>,
}

impl Notifier {
    /// A notifier for `config`.
    pub fn new(config: NotifierConfig) -> Self {
        let http = reqwest::Client::builder().build().unwrap_or_default();
        Self {
            config,
            http,
            grouper: std::sync::Mutex::new(Grouper::default()),
            delivered: Arc::default(),
        }
    }

    fn count(&self, sink: &'static str) {
        *self
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sink)
            .or_insert(0) += 1;
    }

    /// Deliver `d` to every configured sink; failures are logged (and returned) per sink.
    pub async fn deliver(&self, d: &Delivery) -> Vec<NotifyError> {
        let mut errors = Vec::new();
        if let Some(e) = &self.config.email {
            match send_email(e, d).await {
                Ok(()) => self.count("email"),
                Err(err) => errors.push(err),
            }
        }
        if let Some(w) = &self.config.webhook {
            match self.send_webhook(w, d).await {
                Ok(()) => self.count("webhook"),
                Err(err) => errors.push(err),
            }
        }
        if let Some(c) = &self.config.command {
            match run_command(c, d).await {
                Ok(()) => self.count("command"),
                Err(err) => errors.push(err),
            }
        }
        for e in &errors {
            tracing::error!(code = %d.code, kind = ?e.kind(), "alert delivery failed: {e}");
        }
        errors
    }

    async fn send_webhook(&self, w: &WebhookConfig, d: &Delivery) -> Result<(), NotifyError> {
        let mut last = String::new();
        for attempt in 0..w.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500u64 << attempt.min(6))).await;
            }
            match self
                .http
                .post(&w.url)
                .timeout(w.timeout)
                .json(d)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tracing::warn!(
                attempt = attempt + 1,
                "webhook delivery failed: {last}; retrying"
            );
        }
        Err(NotifyError::new(
            NotifyErrorKind::Webhook,
            format!(
                "notifier.webhook.url {} after {} attempts",
                w.url, w.attempts
            ),
            last,
        ))
    }

    /// Handle one alert body: group it, deliver what is due.
    pub async fn handle(&self, alert: &Alert) {
        let now = Instant::now();
        let d = self
            .grouper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .offer(
                alert,
                now,
                self.config.group_window,
                self.config.max_per_hour,
            );
        if let Some(d) = d {
            self.deliver(&d).await;
        }
    }

    /// Deliver groups whose window has passed.
    pub async fn flush_due(&self) {
        let due = self.grouper.lock().unwrap_or_else(|e| e.into_inner()).due(
            Instant::now(),
            self.config.group_window,
            self.config.max_per_hour,
        );
        for d in due {
            self.deliver(&d).await;
        }
    }

    /// Read `SHIRASE_ALERTS` through the durable consumer until `shutdown`.
    pub async fn run(
        self,
        js: jetstream::Context,
        shutdown: CancellationToken,
    ) -> Result<(), NotifyError> {
        let stream = js.get_stream(ALERT_STREAM).await.map_err(|e| {
            NotifyError::new(
                NotifyErrorKind::Server,
                format!("stream {ALERT_STREAM} (run `shirase-relay provision`)"),
                e,
            )
        })?;
        let c: consumer::PullConsumer = stream
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    description: Some("Shirase notifier (e-mail, webhook, command)".into()),
                    deliver_policy: consumer::DeliverPolicy::New,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(120),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                NotifyError::new(
                    NotifyErrorKind::Server,
                    format!("consumer {ALERT_STREAM}/{CONSUMER}"),
                    e,
                )
            })?;
        let mut messages = c
            .stream()
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(|e| NotifyError::new(NotifyErrorKind::Server, "reading alerts", e))?;
        let mut flush = tokio::time::interval(
            Duration::from_secs(1).min(self.config.group_window.max(Duration::from_millis(100))),
        );
        tracing::info!("notifier reading {ALERT_STREAM}");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = flush.tick() => self.flush_due().await,
                m = messages.next() => match m {
                    Some(Ok(m)) => {
                        match Alert::from_stored(&m.subject, &m.payload) {
                            Ok(a) => self.handle(&a).await,
                            Err(e) => tracing::warn!(subject = %m.subject, "message that is not an alert ignored: {e}"),
                        }
                        let _ = m.ack().await;
                    }
                    Some(Err(e)) => tracing::warn!("alert stream: {e}"),
                    None => return Ok(()),
                },
            }
        }
    }
}

/// Start the notifier of a serving relay in the background (retrying until the alert stream
/// exists).
pub fn spawn(
    config: NotifierConfig,
    js: jetstream::Context,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let n = Notifier::new(config.clone());
            match n.run(js.clone(), shutdown.clone()).await {
                Ok(()) => return,
                Err(e) => tracing::warn!("notifier not running yet: {e}"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    })
}

fn email_text(d: &Delivery) -> (String, String) {
    let subject = format!(
        "[shirase {}] {} provider {} subscriber {}{}",
        d.severity,
        d.code,
        d.provider.as_deref().unwrap_or("-"),
        d.subscriber.as_deref().unwrap_or("-"),
        if d.count > 1 {
            format!(" (x{})", d.count)
        } else {
            String::new()
        }
    );
    let body = format!(
        "{}\n\nseverity:   {}\ncomponent:  {}\ncode:       {}\nprovider:   {}\nsubscriber: {}\ninterface:  {}\nfirst seen: {}\nlast seen:  {}\ncount:      {}\n\nrunbook: {}\n",
        d.message,
        d.severity,
        d.component,
        d.code,
        d.provider.as_deref().unwrap_or("-"),
        d.subscriber.as_deref().unwrap_or("-"),
        d.interface_id.as_deref().unwrap_or("-"),
        d.first_seen,
        d.last_seen,
        d.count,
        d.runbook
    );
    (subject, body)
}

async fn send_email(e: &EmailConfig, d: &Delivery) -> Result<(), NotifyError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let err =
        |what: &str, m: &dyn std::fmt::Display| NotifyError::new(NotifyErrorKind::Email, what, m);
    let (subject, body) = email_text(d);
    let mut b = Message::builder()
        .from(e.from.parse().map_err(|x| err("notifier.email.from", &x))?)
        .subject(subject);
    for (i, t) in e.to.iter().enumerate() {
        b = b.to(t
            .parse()
            .map_err(|x| err(&format!("notifier.email.to[{i}]"), &x))?);
    }
    let msg = b.body(body).map_err(|x| err("building the e-mail", &x))?;
    let tls = match e.security {
        SmtpSecurity::None => Tls::None,
        s => {
            let mut p = TlsParameters::builder(e.smtp_host.clone());
            if let Some(ca) = &e.ca_file {
                let pem = std::fs::read(ca).map_err(|x| err("notifier.email.ca_file", &x))?;
                p = p.add_root_certificate(
                    Certificate::from_pem(&pem).map_err(|x| err("notifier.email.ca_file", &x))?,
                );
            }
            let p = p.build().map_err(|x| err("SMTP TLS parameters", &x))?;
            if s == SmtpSecurity::Tls {
                Tls::Wrapper(p)
            } else {
                Tls::Required(p)
            }
        }
    };
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(e.smtp_host.clone())
        .port(e.smtp_port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(30)));
    if let (Some(u), Some(f)) = (&e.username, &e.password_file) {
        let pw = std::fs::read_to_string(f).map_err(|x| err("notifier.email.password_file", &x))?;
        t = t.credentials(Credentials::new(u.clone(), pw.trim().to_owned()));
    }
    t.build()
        .send(msg)
        .await
        .map_err(|x| err(&format!("SMTP {}:{}", e.smtp_host, e.smtp_port), &x))?;
    Ok(())
}

async fn run_command(c: &CommandConfig, d: &Delivery) -> Result<(), NotifyError> {
    let err = |m: &dyn std::fmt::Display| {
        NotifyError::new(
            NotifyErrorKind::Command,
            format!("notifier.command.program {}", c.program),
            m,
        )
    };
    let body = serde_json::to_vec(d).map_err(|e| err(&e))?;
    let mut child = tokio::process::Command::new(&c.program)
        .args(&c.args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err(&e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await.map_err(|e| err(&e))?;
        // Closing stdin tells the program the alert is complete.
        drop(stdin);
    }
    match tokio::time::timeout(c.timeout, child.wait()).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(err(&format!("exited with {s}"))),
        Ok(Err(e)) => Err(err(&e)),
        Err(_) => Err(err(&format!(
            "did not finish within {:?}; killed",
            c.timeout
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(code: &str, provider: &str) -> Alert {
        serde_json::from_value(json!({"severity": "critical", "component": "agent", "code": code, "message": "m", "subscriber": "tax", "provider": provider, "time": "2026-05-12T10:00:00+09:00"})).unwrap()
    }

    #[test]
    fn repeats_are_grouped_and_summarised_after_the_window() {
        let mut g = Grouper::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(600);
        let first = g
            .offer(&alert("provider_unreachable", "001"), t0, w, 100)
            .unwrap();
        assert_eq!(
            (
                first.count,
                first.severity.as_str(),
                first.component.as_str()
            ),
            (1, "critical", "agent")
        );
        assert!(
            first.runbook.contains("operating status"),
            "{}",
            first.runbook
        );
        for i in 1..=4 {
            assert!(
                g.offer(
                    &alert("provider_unreachable", "001"),
                    t0 + Duration::from_secs(i),
                    w,
                    100
                )
                .is_none(),
                "grouped"
            );
        }
        assert!(
            g.offer(&alert("provider_unreachable", "010"), t0, w, 100)
                .is_some(),
            "another provider: another key"
        );
        assert!(g.due(t0 + Duration::from_secs(599), w, 100).is_empty());
        let due = g.due(t0 + Duration::from_secs(600), w, 100);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 4, "the four repeats in one summary");
        assert_eq!(due[0].first_seen, "2026-05-12T10:00:00+09:00");
        assert!(
            g.due(t0 + Duration::from_secs(1300), w, 100).is_empty(),
            "nothing new: nothing sent"
        );
    }

    #[test]
    fn the_hourly_budget_holds_deliveries_back_and_releases_them_later() {
        let mut g = Grouper::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(1);
        assert!(g.offer(&alert("a", "001"), t0, w, 2).is_some());
        assert!(g.offer(&alert("b", "001"), t0, w, 2).is_some());
        assert!(
            g.offer(&alert("c", "001"), t0, w, 2).is_none(),
            "over 2 per hour"
        );
        assert!(
            g.due(t0 + Duration::from_secs(60), w, 2).is_empty(),
            "still over budget"
        );
        let later = g.due(t0 + Duration::from_secs(3600), w, 2);
        assert_eq!(
            later.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }
}
