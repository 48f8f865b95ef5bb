//! Create-or-update of the JetStream state ([`crate::topology::Desired`]), idempotently.
//!
//! [`plan`] reads what the server has and compares it field by field with what the topology
//! wants; [`apply`] performs the plan. A field JetStream cannot change in place (a stream's
//! storage or retention, a consumer's deliver or ack policy) makes the whole plan refused with an
//! error naming the field: nothing is changed and nothing is silently ignored. A second run after
//! a successful one finds nothing to do and says "no changes".

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{self, IntoConsumerConfig};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, kv, stream};
use futures::TryStreamExt;
use shirase_proto::subject::NOTICE_STREAM;

use crate::topology::Desired;

/// What a resource is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A stream.
    Stream(String),
    /// A durable consumer on a stream.
    Consumer {
        /// Its stream.
        stream: String,
        /// Its durable name.
        name: String,
    },
    /// A KV bucket.
    Bucket(String),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Stream(n) => write!(f, "stream {n}"),
            Resource::Consumer { stream, name } => write!(f, "consumer {stream}/{name}"),
            Resource::Bucket(n) => write!(f, "kv bucket {n}"),
        }
    }
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The field's name in JetStream's configuration (`max_age`, `filter_subjects`...).
    pub field: &'static str,
    /// The server's value.
    pub current: String,
    /// The topology's value.
    pub desired: String,
    /// Whether JetStream can apply it to the existing resource.
    pub in_place: bool,
}

/// What happens to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// It does not exist; it will be created.
    Create,
    /// It exists and these fields differ.
    Update(Vec<FieldChange>),
    /// It exists as wanted.
    Unchanged,
    /// It exists on the server but not in the topology; left alone (delete it by hand if meant).
    Extra,
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    /// The resource.
    pub resource: Resource,
    /// What changes.
    pub change: Change,
}

/// The difference between desired and actual state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// One item per resource, streams first, then consumers, then buckets.
    pub items: Vec<PlanItem>,
}

impl Plan {
    /// Whether applying the plan changes nothing.
    pub fn is_noop(&self) -> bool {
        self.items
            .iter()
            .all(|i| matches!(i.change, Change::Unchanged | Change::Extra))
    }

    /// Fields JetStream cannot change in place, with their resource.
    pub fn refused(&self) -> Vec<(&Resource, &FieldChange)> {
        self.items
            .iter()
            .flat_map(|i| match &i.change {
                Change::Update(fs) => fs
                    .iter()
                    .filter(|f| !f.in_place)
                    .map(|f| (&i.resource, f))
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            match &item.change {
                Change::Create => writeln!(f, "+ {} (create)", item.resource)?,
                Change::Unchanged => writeln!(f, "= {} (unchanged)", item.resource)?,
                Change::Extra => {
                    writeln!(f, "? {} (not in the topology; left alone)", item.resource)?
                }
                Change::Update(fields) => {
                    writeln!(f, "~ {} (update)", item.resource)?;
                    for c in fields {
                        let note = if c.in_place {
                            ""
                        } else {
                            "   <- JetStream cannot change this in place"
                        };
                        writeln!(f, "    {}: {} -> {}{note}", c.field, c.current, c.desired)?;
                    }
                }
            }
        }
        if self.is_noop() {
            writeln!(f, "no changes")?;
        }
        Ok(())
    }
}

/// What kind of provisioning failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionErrorKind {
    /// The server could not be asked or refused a request.
    Server,
    /// The plan needs a change JetStream cannot apply in place.
    Unchangeable,
}

/// Provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A request to JetStream failed.
    #[error("{what}: {source}")]
    Server {
        /// What we were doing.
        what: String,
        /// The error.
        #[source]
        source: async_nats::Error,
    },
    /// Fields that cannot change in place; nothing was applied.
    #[error("{}", unchangeable_message(.0))]
    Unchangeable(Vec<(Resource, FieldChange)>),
}

fn unchangeable_message(v: &[(Resource, FieldChange)]) -> String {
    let mut s = String::from(
        "refusing to provision: JetStream cannot change these fields in place (nothing was changed):",
    );
    for (r, c) in v {
        s.push_str(&format!(
            "\n  {r}: {} is {} on the server, the topology wants {}; recreate it (back up first) or change the config back",
            c.field, c.current, c.desired
        ));
    }
    s
}

impl ProvisionError {
    /// The kind, for callers that branch.
    pub fn kind(&self) -> ProvisionErrorKind {
        match self {
            ProvisionError::Server { .. } => ProvisionErrorKind::Server,
            ProvisionError::Unchangeable(_) => ProvisionErrorKind::Unchangeable,
        }
    }
}

fn server(what: impl Into<String>) -> impl FnOnce(async_nats::Error) -> ProvisionError {
    let what = what.into();
    move |source| ProvisionError::Server { what, source }
}

fn dur(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s > 0 && s.is_multiple_of(3_600) {
        format!("{}h", s / 3_600)
    } else {
        format!("{:?}", d)
    }
}

struct Diff(Vec<FieldChange>);

impl Diff {
    fn field<T: PartialEq + fmt::Debug>(
        &mut self,
        field: &'static str,
        current: T,
        desired: T,
        in_place: bool,
    ) {
        if current != desired {
            self.0.push(FieldChange {
                field,
                current: format!("{current:?}"),
                desired: format!("{desired:?}"),
                in_place,
            });
        }
    }
    fn duration(&mut self, field: &'static str, current: Duration, desired: Duration) {
        if current != desired {
            self.0.push(FieldChange {
                field,
                current: dur(current),
                desired: dur(desired),
                in_place: true,
            });
        }
    }
    fn change(self) -> Change {
        if self.0.is_empty() {
            Change::Unchanged
        } else {
            Change::Update(self.0)
        }
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Compare a stream's actual configuration with the desired one.
pub fn diff_stream(actual: &stream::Config, desired: &stream::Config) -> Change {
    let mut d = Diff(Vec::new());
    d.field(
        "subjects",
        sorted(&actual.subjects),
        sorted(&desired.subjects),
        true,
    );
    d.field("storage", actual.storage, desired.storage, false);
    d.field("retention", actual.retention, desired.retention, false);
    d.field(
        "num_replicas",
        actual.num_replicas,
        desired.num_replicas,
        true,
    );
    d.duration("max_age", actual.max_age, desired.max_age);
    d.field("max_bytes", actual.max_bytes, desired.max_bytes, true);
    d.duration(
        "duplicate_window",
        actual.duplicate_window,
        desired.duplicate_window,
    );
    d.field("discard", actual.discard, desired.discard, true);
    d.field(
        "allow_direct",
        actual.allow_direct,
        desired.allow_direct,
        true,
    );
    d.field(
        "allow_atomic",
        actual.allow_atomic_publish,
        desired.allow_atomic_publish,
        true,
    );
    d.field(
        "description",
        actual.description.clone(),
        desired.description.clone(),
        true,
    );
    d.change()
}

/// Compare a consumer's actual configuration with the desired one.
pub fn diff_consumer(actual: &consumer::Config, desired: &consumer::Config) -> Change {
    let mut d = Diff(Vec::new());
    let filters = |c: &consumer::Config| {
        let mut f = c.filter_subjects.clone();
        if !c.filter_subject.is_empty() {
            f.push(c.filter_subject.clone());
        }
        f.sort();
        f
    };
    d.field("filter_subjects", filters(actual), filters(desired), true);
    d.field(
        "deliver_policy",
        actual.deliver_policy,
        desired.deliver_policy,
        false,
    );
    d.field("ack_policy", actual.ack_policy, desired.ack_policy, false);
    d.duration("ack_wait", actual.ack_wait, desired.ack_wait);
    d.field("max_deliver", actual.max_deliver, desired.max_deliver, true);
    d.field(
        "max_ack_pending",
        actual.max_ack_pending,
        desired.max_ack_pending,
        true,
    );
    d.field(
        "description",
        actual.description.clone(),
        desired.description.clone(),
        true,
    );
    d.change()
}

/// Compare a bucket's backing stream with the desired bucket.
fn diff_bucket(actual: &stream::Config, desired: &kv::Config) -> Change {
    let mut d = Diff(Vec::new());
    d.field(
        "history",
        actual.max_messages_per_subject,
        desired.history,
        true,
    );
    d.field("storage", actual.storage, desired.storage, false);
    d.field(
        "num_replicas",
        actual.num_replicas,
        desired.num_replicas,
        true,
    );
    d.field("max_bytes", actual.max_bytes, desired.max_bytes, true);
    d.change()
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

async fn stream_config(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Stream>, ProvisionError> {
    patiently(format!("reading stream {name}"), || async {
        match js.get_stream(name).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_stream_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Read the server's state and compute what provisioning `desired` would change.
pub async fn plan(js: &jetstream::Context, desired: &Desired) -> Result<Plan, ProvisionError> {
    let mut items = Vec::new();
    let mut notice_stream = None;
    for want in &desired.streams {
        let change = match stream_config(js, &want.name).await? {
            None => Change::Create,
            Some(s) => {
                let c = diff_stream(&s.cached_info().config, want);
                if want.name == NOTICE_STREAM {
                    notice_stream = Some(s);
                }
                c
            }
        };
        items.push(PlanItem {
            resource: Resource::Stream(want.name.clone()),
            change,
        });
    }
    let mut wanted_names = Vec::new();
    for spec in &desired.consumers {
        let name = spec.config.durable_name.clone().unwrap_or_default();
        wanted_names.push(name.clone());
        let resource = Resource::Consumer {
            stream: NOTICE_STREAM.to_owned(),
            name: name.clone(),
        };
        let change = match &notice_stream {
            None => Change::Create,
            Some(s) => {
                let info = patiently(format!("reading consumer {name}"), || async {
                    match s.consumer_info(&name).await {
                        Ok(info) => Ok(Some(info.config.clone())),
                        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
                match info {
                    Some(config) => {
                        diff_consumer(&config, &spec.config.clone().into_consumer_config())
                    }
                    None => Change::Create,
                }
            }
        };
        items.push(PlanItem { resource, change });
    }
    if let Some(s) = &notice_stream {
        let names: Vec<String> = s
            .consumer_names()
            .try_collect()
            .await
            .map_err(|e| server("listing consumers")(e.into()))?;
        for n in names.into_iter().filter(|n| !wanted_names.contains(n)) {
            items.push(PlanItem {
                resource: Resource::Consumer {
                    stream: NOTICE_STREAM.to_owned(),
                    name: n,
                },
                change: Change::Extra,
            });
        }
    }
    for b in &desired.buckets {
        let change = match stream_config(js, &format!("KV_{}", b.bucket)).await? {
            None => Change::Create,
            Some(s) => diff_bucket(&s.cached_info().config, b),
        };
        items.push(PlanItem {
            resource: Resource::Bucket(b.bucket.clone()),
            change,
        });
    }
    Ok(Plan { items })
}

/// Plan, then (unless `dry_run`) apply. Refuses with [`ProvisionError::Unchangeable`] before
/// changing anything when a field cannot change in place.
pub async fn provision(
    js: &jetstream::Context,
    desired: &Desired,
    dry_run: bool,
) -> Result<Plan, ProvisionError> {
    let plan = plan(js, desired).await?;
    let refused = plan.refused();
    if !refused.is_empty() {
        return Err(ProvisionError::Unchangeable(
            refused
                .into_iter()
                .map(|(r, f)| (r.clone(), f.clone()))
                .collect(),
        ));
    }
    if dry_run {
        return Ok(plan);
    }
    apply(js, desired, &plan).await?;
    Ok(plan)
}

async fn apply(
    js: &jetstream::Context,
    desired: &Desired,
    plan: &Plan,
) -> Result<(), ProvisionError> {
    for item in &plan.items {
        let create = matches!(item.change, Change::Create);
        if !create && !matches!(item.change, Change::Update(_)) {
            continue;
        }
        match &item.resource {
            Resource::Stream(name) => {
                let Some(cfg) = desired.streams.iter().find(|s| &s.name == name) else {
                    continue;
                };
                let verb = if create { "creating" } else { "updating" };
                patiently(format!("{verb} stream {name}"), || async {
                    if create {
                        js.create_stream(cfg.clone()).await.map(drop)
                    } else {
                        js.update_stream(cfg.clone()).await.map(drop)
                    }
                })
                .await?;
                tracing::info!(stream = %name, created = create, "stream provisioned");
            }
            Resource::Consumer { stream, name } => {
                let Some(spec) = desired
                    .consumers
                    .iter()
                    .find(|c| c.config.durable_name.as_deref() == Some(name))
                else {
                    continue;
                };
                let s = js
                    .get_stream(stream)
                    .await
                    .map_err(|e| server(format!("reading stream {stream}"))(e.into()))?;
                if create {
                    patiently(format!("creating consumer {name}"), || async {
                        s.create_consumer(spec.config.clone()).await.map(drop)
                    })
                    .await?;
                } else {
                    patiently(format!("updating consumer {name}"), || async {
                        s.update_consumer(spec.config.clone()).await.map(drop)
                    })
                    .await?;
                }
                tracing::info!(consumer = %name, created = create, "consumer provisioned");
            }
            Resource::Bucket(name) => {
                let Some(cfg) = desired.buckets.iter().find(|b| &b.bucket == name) else {
                    continue;
                };
                if create {
                    patiently(format!("creating bucket {name}"), || async {
                        js.create_key_value(cfg.clone()).await.map(drop)
                    })
                    .await?;
                } else {
                    patiently(format!("updating bucket {name}"), || async {
                        js.update_key_value(cfg.clone()).await.map(drop)
                    })
                    .await?;
                }
                tracing::info!(bucket = %name, created = create, "bucket provisioned");
            }
        }
    }
    Ok(())
}

/// How many times one create or update is sent when JetStream does not answer in time.
const ATTEMPTS: u32 = 3;

/// Send one request, again when JetStream did not answer in time: a clustered JetStream drops
/// API requests while its meta group elects a leader, and a request that timed out may still
/// have been applied. Sending it again is safe: a read changes nothing, JetStream answers a
/// create with the configuration the resource already has as a success, and an update is
/// idempotent.
async fn patiently<T, E, Fut>(
    what: String,
    mut op: impl FnMut() -> Fut,
) -> Result<T, ProvisionError>
where
    E: Unanswered + Into<async_nats::Error>,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.unanswered() && attempt < ATTEMPTS => {
                tracing::warn!(%what, attempt, error = %e, "JetStream did not answer; sending again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                attempt += 1;
            }
            Err(e) => return Err(server(what)(e.into())),
        }
    }
}

/// An error that means "JetStream did not answer (yet)", not "JetStream refused".
trait Unanswered: fmt::Display {
    fn unanswered(&self) -> bool;
}

impl Unanswered for jetstream::context::CreateStreamError {
    fn unanswered(&self) -> bool {
        use jetstream::context::CreateStreamErrorKind as K;
        matches!(self.kind(), K::TimedOut | K::JetStreamUnavailable)
    }
}

impl Unanswered for jetstream::context::GetStreamError {
    fn unanswered(&self) -> bool {
        // Its request kind covers a timeout and no responders.
        matches!(self.kind(), GetStreamErrorKind::Request)
    }
}

impl Unanswered for jetstream::context::ConsumerInfoError {
    fn unanswered(&self) -> bool {
        matches!(
            self.kind(),
            ConsumerInfoErrorKind::TimedOut
                | ConsumerInfoErrorKind::NoResponders
                | ConsumerInfoErrorKind::Request
        )
    }
}

impl Unanswered for jetstream::stream::ConsumerError {
    fn unanswered(&self) -> bool {
        matches!(self.kind(), jetstream::stream::ConsumerErrorKind::TimedOut)
    }
}

impl Unanswered for jetstream::stream::ConsumerUpdateError {
    fn unanswered(&self) -> bool {
        matches!(
            self.kind(),
            jetstream::stream::ConsumerUpdateErrorKind::TimedOut
        )
    }
}

impl Unanswered for jetstream::context::CreateKeyValueError {
    fn unanswered(&self) -> bool {
        matches!(
            self.kind(),
            jetstream::context::CreateKeyValueErrorKind::TimedOut
        )
    }
}

impl Unanswered for jetstream::context::UpdateKeyValueError {
    fn unanswered(&self) -> bool {
        matches!(
            self.kind(),
            jetstream::context::UpdateKeyValueErrorKind::TimedOut
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetstream::context::{CreateStreamError, CreateStreamErrorKind};
    use std::cell::Cell;

    async fn run(answers: &[CreateStreamErrorKind]) -> (Result<(), ProvisionError>, usize) {
        let sent = Cell::new(0);
        let result = patiently("creating stream S".into(), || {
            let n = sent.get();
            sent.set(n + 1);
            let answer = answers.get(n).cloned();
            async move {
                match answer {
                    None => Ok(()),
                    Some(kind) => Err(CreateStreamError::new(kind)),
                }
            }
        })
        .await;
        (result, sent.get())
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_request_is_sent_again_until_answered() {
        let (result, sent) = run(&[
            CreateStreamErrorKind::TimedOut,
            CreateStreamErrorKind::JetStreamUnavailable,
        ])
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sent, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_unanswered_every_time_fails_naming_what_was_sent() {
        let (result, sent) = run(&[const { CreateStreamErrorKind::TimedOut }; 5]).await;
        assert_eq!(sent, ATTEMPTS as usize);
        let message = result.unwrap_err().to_string();
        assert!(message.starts_with("creating stream S: "), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_sent_again() {
        let (result, sent) = run(&[CreateStreamErrorKind::InvalidStreamName]).await;
        assert_eq!(sent, 1);
        assert_eq!(result.unwrap_err().kind(), ProvisionErrorKind::Server);
    }
}
