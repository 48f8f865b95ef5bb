//! The commands of the `shirase-relay` binary. The binary parses its arguments and calls these;
//! what a command prints goes to `out`.
//!
//! - [`serve`]: the relay until SIGTERM or Ctrl-C.
//! - [`provision`], [`check_config`]: the configuration and the JetStream state it asks for.
//! - [`backup`], [`restore`]: every stream and KV bucket to and from a directory
//!   ([`crate::backup`]).
//! - [`nkey`]: a new NATS user identity (seed file + public key).
//! - [`ops`]: the operator commands, through the operator API of a running relay
//!   ([`crate::operator::client`]), never NATS directly.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::backup::BackupError;
use crate::config::ConfigError;
use crate::connection::{self, ConnectError};
use crate::nats_auth::NatsAuthError;
use crate::operator::client::{self, Client, ClientError};
use crate::operator::dlq::DlqFilter;
use crate::operator::pause::PauseRequest;
use crate::operator::replay::ReplayRequest;
use crate::operator::resync::ResyncRequest;
use crate::provision::ProvisionError;
use crate::serve::ServeError;

/// Why a command failed. The message names what to fix; its sources follow it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The NATS authorization could not be generated.
    #[error(transparent)]
    NatsAuth(#[from] NatsAuthError),
    /// A file could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// NATS could not be reached or refused the relay.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Provisioning failed or was refused.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The listen address could not be bound.
    #[error("binding {field} {listen}")]
    Bind {
        /// `http.listen` or `ops.listen`.
        field: &'static str,
        /// The address.
        listen: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration holds committed dev credentials and listens beyond loopback.
    #[error("{0}")]
    DevCredentials(String),
    /// Serving stopped with an error.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The operator API call failed.
    #[error(transparent)]
    Ops(#[from] ClientError),
    /// `dlq purge` without `--yes`.
    #[error(
        "purge deletes dead letters for good; add --yes to confirm (see them first with `dlq list`)"
    )]
    PurgeUnconfirmed,
    /// A backup or restore failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The nkey could not be generated.
    #[error("generating an nkey: {0}")]
    Nkey(String),
    /// The seed file exists already.
    #[error("{}: exists already; a seed file is never overwritten (remove it or choose another path)", path.display())]
    SeedExists {
        /// The file.
        path: PathBuf,
    },
    /// The output could not be written.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// How long provisioning waits for each JetStream API answer.
const PROVISION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serve `POST /v1/notices`, health, metrics and the operator API with the configuration in
/// `config` until SIGTERM or Ctrl-C, then finish in-flight requests.
pub async fn serve(config: &Path) -> Result<(), CliError> {
    let c = Config::load(Some(config))?;
    if let Some(why) = crate::dev_credentials::refusal(&c) {
        return Err(CliError::DevCredentials(why));
    }
    let listener = tokio::net::TcpListener::bind(c.http.listen)
        .await
        .map_err(|source| CliError::Bind {
            field: "http.listen",
            listen: c.http.listen,
            source,
        })?;
    let ops_listener = match c.ops.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| CliError::Bind {
                    field: "ops.listen",
                    listen: addr,
                    source,
                })?,
        ),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        shirase_service::signals::wait_for_signal().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        signal_token.cancel();
    });
    crate::serve::run_with_ops(c, listener, ops_listener, shutdown).await?;
    Ok(())
}

/// Load and validate the configuration and print a summary: the topology it makes and the
/// watched providers.
pub fn check_config(config: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let c = Config::load(Some(config))?;
    let d = crate::topology::desired(&c);
    writeln!(
        out,
        "ok: municipality {}, listen {}, nats {}, {} provider(s), {} interface(s), {} subscriber(s) -> {} stream(s), {} consumer(s), {} bucket(s)",
        c.municipality,
        c.http.listen,
        c.nats.urls.join(","),
        c.providers.len(),
        c.interfaces.len(),
        c.subscribers.len(),
        d.streams.len(),
        d.consumers.len(),
        d.buckets.len()
    )?;
    for p in &c.providers {
        if let Some(w) = &p.watch {
            let ifaces: Vec<String> = w.interfaces.iter().map(ToString::to_string).collect();
            writeln!(
                out,
                "watched: provider {} ({}), interfaces {}, every {:?} (min {:?}, max {:?}){}",
                p.business_id,
                p.name,
                ifaces.join(","),
                w.interval,
                w.min_interval,
                w.max_interval,
                w.until
                    .map(|u| format!(", native notices from {u}"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

/// Create or update the streams, consumers and KV buckets of the topology (`dry_run`: print the
/// difference only). `emit_nats_auth`: first write the nats-server authorization generated from
/// the topology to that file.
pub async fn provision(
    config: &Path,
    dry_run: bool,
    emit_nats_auth: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let c = Config::load(Some(config))?;
    if let Some(file) = emit_nats_auth {
        write_nats_auth(&c, file, out)?;
    }
    let client = connection::connect(&c.nats).await?;
    // Creating a replicated stream or consumer waits for its peers to agree; on a busy cluster
    // that can take longer than async-nats' default 10 s request timeout.
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(PROVISION_TIMEOUT)
        .build(client);
    let desired = crate::topology::desired(&c);
    let plan = crate::provision::provision(&js, &desired, dry_run).await?;
    if dry_run {
        writeln!(out, "dry run: nothing was changed")?;
    }
    write!(out, "{plan}")?;
    Ok(())
}

async fn jetstream(
    c: &Config,
) -> Result<(async_nats::Client, async_nats::jetstream::Context), CliError> {
    let client = connection::connect(&c.nats).await?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(PROVISION_TIMEOUT)
        .build(client.clone());
    Ok((client, js))
}

/// Save every stream and KV bucket of the topology of `config` into the new directory `out_dir`
/// through JetStream's snapshot API, with the relay's identity (`[nats]`).
pub async fn backup(config: &Path, out_dir: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let c = Config::load(Some(config))?;
    let (client, js) = jetstream(&c).await?;
    let streams = crate::backup::stream_names(&c);
    crate::backup::backup(
        &client,
        &js,
        c.municipality.as_str(),
        &streams,
        out_dir,
        out,
    )
    .await?;
    client.flush().await.ok();
    Ok(())
}

/// Restore the streams of the backup in `from` (all, or those in `only`) into the cluster of
/// `config` (which must have none of them yet); run `provision` afterwards.
pub async fn restore(
    config: &Path,
    from: &Path,
    only: &[String],
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let c = Config::load(Some(config))?;
    let (client, js) = jetstream(&c).await?;
    crate::backup::restore(&client, &js, c.municipality.as_str(), from, only, out).await?;
    Ok(())
}

/// Generate a NATS user nkey: write its seed to the new file `seed_file` (mode 0600) and print
/// its public key (the `U...` value relay.toml's `nats_nkey` / `relay_nkey` take).
pub fn nkey(seed_file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    use std::io::ErrorKind;
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().map_err(|e| CliError::Nkey(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(seed_file)
        .map_err(|source| match source.kind() {
            ErrorKind::AlreadyExists => CliError::SeedExists {
                path: seed_file.to_owned(),
            },
            _ => CliError::Write {
                path: seed_file.to_owned(),
                source,
            },
        })?;
    let write = |source| CliError::Write {
        path: seed_file.to_owned(),
        source,
    };
    writeln!(file, "{seed}").map_err(write)?;
    file.sync_all().map_err(write)?;
    writeln!(out, "{}", pair.public_key())?;
    Ok(())
}

fn write_nats_auth(c: &Config, file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let text = crate::nats_auth::emit(c)?;
    std::fs::write(file, text).map_err(|source| CliError::Write {
        path: file.to_owned(),
        source,
    })?;
    writeln!(out, "wrote NATS authorization to {}", file.display())?;
    Ok(())
}

/// `provision --emit-nats-auth FILE --emit-only`: write the nats-server authorization generated
/// from the topology of `config` to `file` and stop, without connecting to NATS.
pub fn emit_nats_auth(
    config: &Path,
    file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let c = Config::load(Some(config))?;
    if let Some(file) = file {
        write_nats_auth(&c, file, out)?;
    }
    Ok(())
}

/// How an operator command reaches the relay and prints its answer.
#[derive(Debug, Clone)]
pub struct OpsTarget {
    /// The relay's base URL (`https://...` when the relay sets `http.tls_cert_file`).
    pub url: String,
    /// A CA (PEM) trusted for an `https://` URL besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// The file holding the operator's bearer token.
    pub token_file: PathBuf,
    /// Print the answer as JSON instead of tables.
    pub json: bool,
}

/// An operator command, with the operator API's own request types.
#[derive(Debug, Clone)]
pub enum OpsCommand {
    /// Consumers, checkpoints, maintenance windows, dead letters, alerts.
    Status,
    /// Re-deliver stored notices of a range to one subscriber.
    Replay(ReplayRequest),
    /// Rewind a subscriber's checkpoint.
    Resync(ResyncRequest),
    /// Pause a (subscriber, provider) consumer.
    Pause(PauseRequest),
    /// Resume a paused consumer.
    Resume(PauseRequest),
    /// List dead letters (`seq` set: that one only). `yes` is not used.
    DlqList(DlqFilter),
    /// One dead letter with its whole body.
    DlqShow(u64),
    /// Re-deliver matching dead letters, then delete them. `yes` is not used.
    DlqRedrive(DlqFilter),
    /// Delete matching dead letters; refused here unless `yes`.
    DlqPurge(DlqFilter),
}

type Render = fn(&Value) -> String;

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// Run an operator command against the relay at `target` and print its answer: JSON with
/// `target.json`, a table or `key: value` lines otherwise.
pub async fn ops(
    target: &OpsTarget,
    command: OpsCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if let OpsCommand::DlqPurge(f) = &command
        && !f.yes
    {
        return Err(CliError::PurgeUnconfirmed);
    }
    let c = Client::new(&target.url, &target.token_file, target.ca_file.as_deref())?;
    let object: Render = client::render_object;
    let (answer, render): (Value, Render) = match command {
        OpsCommand::Status => (c.status().await?, client::render_status),
        OpsCommand::Replay(r) => (c.replay(&r).await?, object),
        OpsCommand::Resync(r) => (c.resync(&r).await?, object),
        OpsCommand::Pause(r) => (c.pause(&r).await?, object),
        OpsCommand::Resume(r) => (c.resume(&r).await?, object),
        OpsCommand::DlqList(f) => {
            let list = match f.seq {
                Some(seq) => Value::Array(vec![c.dlq_show(seq).await?]),
                None => {
                    let q = crate::operator::api::DlqQuery {
                        subscriber: f.subscriber,
                        provider: f.provider,
                        interface: f.interface,
                        limit: None,
                    };
                    c.dlq_list(&q).await?
                }
            };
            (list, client::render_dlq)
        }
        OpsCommand::DlqShow(seq) => (c.dlq_show(seq).await?, pretty),
        OpsCommand::DlqRedrive(f) => (c.dlq_redrive(&f).await?, object),
        OpsCommand::DlqPurge(f) => (c.dlq_purge(&f).await?, object),
    };
    if target.json {
        write!(out, "{}", pretty(&answer))?;
    } else {
        write!(out, "{}", render(&answer))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

    use super::*;

    #[test]
    fn nkey_writes_a_private_seed_whose_public_key_it_prints_and_never_overwrites_one() {
        let dir = tempfile::tempdir().unwrap();
        let seed_file = dir.path().join("relay.nk");
        let mut out = Vec::new();
        nkey(&seed_file, &mut out).unwrap();
        let public = String::from_utf8(out).unwrap();
        let seed = std::fs::read_to_string(&seed_file).unwrap();
        assert!(seed.starts_with("SU"), "a user seed");
        let pair = nkeys::KeyPair::from_seed(seed.trim()).unwrap();
        assert_eq!(public.trim(), pair.public_key());
        assert_eq!(public.trim().len(), 56);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&seed_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = nkey(&seed_file, &mut Vec::new());
        assert!(
            matches!(again, Err(CliError::SeedExists { .. })),
            "{again:?}"
        );
        assert_eq!(std::fs::read_to_string(&seed_file).unwrap(), seed);
    }

    #[test]
    fn emit_only_writes_the_authorization_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let file = dir.path().join("auth.conf");
        let mut out = Vec::new();
        emit_nats_auth(
            &root.join("deploy/compose/relay.toml"),
            Some(&file),
            &mut out,
        )
        .unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            std::fs::read_to_string(root.join("deploy/nats/auth.conf")).unwrap()
        );
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("wrote NATS authorization to ")
        );
    }
}
