//! `[notifier]`: the error notification function's settings (the notifier itself is
//! [`crate::notifier`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::common::parse_duration;

/// `[notifier]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNotifierConfig {
    /// Run the notifier in `serve`.
    pub enabled: bool,
    /// Repeats of one key within this window are grouped into one delivery.
    pub group_window: String,
    /// Most deliveries per hour (all keys together).
    pub max_per_hour: u32,
    /// E-mail delivery.
    pub email: Option<RawEmail>,
    /// Webhook delivery.
    pub webhook: Option<RawWebhook>,
    /// Command delivery.
    pub command: Option<RawCommand>,
}

impl Default for RawNotifierConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_window: "10m".into(),
            max_per_hour: 30,
            email: None,
            webhook: None,
            command: None,
        }
    }
}

/// `[notifier.email]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// SMTP server host.
    pub smtp_host: String,
    /// Port (587 for STARTTLS, 465 for TLS, 25 for a local relay).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// `starttls` (required), `tls` (wrapped) or `none` (plain: local relays and tests only).
    #[serde(default = "default_security")]
    pub security: String,
    /// SMTP user (optional).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the SMTP password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Extra CA (PEM) for the SMTP server's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// From address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_security() -> String {
    "starttls".into()
}

/// `[notifier.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// URL receiving the JSON POST.
    pub url: String,
    /// Attempts before giving up on one delivery.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Timeout per attempt.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_attempts() -> u32 {
    5
}
fn default_timeout() -> String {
    "10s".into()
}

/// `[notifier.command]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    /// Program to run (absolute path or found on PATH).
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Longest run before it is killed.
    #[serde(default = "default_command_timeout")]
    pub timeout: String,
}

fn default_command_timeout() -> String {
    "30s".into()
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// STARTTLS required.
    StartTls,
    /// TLS from the first byte.
    Tls,
    /// Plain text (local relays, tests).
    None,
}

/// Validated `[notifier.email]`.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// Host.
    pub smtp_host: String,
    /// Port.
    pub smtp_port: u16,
    /// Security.
    pub security: SmtpSecurity,
    /// User.
    pub username: Option<String>,
    /// Password file.
    pub password_file: Option<PathBuf>,
    /// Extra CA.
    pub ca_file: Option<PathBuf>,
    /// From.
    pub from: String,
    /// To.
    pub to: Vec<String>,
}

/// Validated `[notifier.webhook]`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// URL.
    pub url: String,
    /// Attempts.
    pub attempts: u32,
    /// Timeout per attempt.
    pub timeout: Duration,
}

/// Validated `[notifier.command]`.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// Program.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Longest run.
    pub timeout: Duration,
}

/// Validated `[notifier]`.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Run in `serve`.
    pub enabled: bool,
    /// Grouping window.
    pub group_window: Duration,
    /// Deliveries per hour.
    pub max_per_hour: u32,
    /// E-mail.
    pub email: Option<EmailConfig>,
    /// Webhook.
    pub webhook: Option<WebhookConfig>,
    /// Command.
    pub command: Option<CommandConfig>,
}

impl NotifierConfig {
    /// Validate, reporting each problem with its field path through `problem`.
    pub(super) fn validate(
        raw: &RawNotifierConfig,
        base_dir: Option<&std::path::Path>,
        problem: &mut dyn FnMut(String, String),
    ) -> Self {
        let group_window = duration("group_window", &raw.group_window, problem);
        if raw.max_per_hour == 0 {
            problem("notifier.max_per_hour".into(), "must be at least 1".into());
        }
        let email = raw
            .email
            .as_ref()
            .map(|e| EmailConfig::validate(e, base_dir, problem));
        let webhook = raw
            .webhook
            .as_ref()
            .map(|w| WebhookConfig::validate(w, problem));
        let command = raw
            .command
            .as_ref()
            .map(|c| CommandConfig::validate(c, problem));
        Self {
            enabled: raw.enabled,
            group_window,
            max_per_hour: raw.max_per_hour.max(1),
            email,
            webhook,
            command,
        }
    }
}

/// The duration `v` of `notifier.<field>` (1s, with a problem, when unreadable).
fn duration(field: &str, v: &str, problem: &mut dyn FnMut(String, String)) -> Duration {
    parse_duration(v).unwrap_or_else(|e| {
        problem(format!("notifier.{field}"), e);
        Duration::from_secs(1)
    })
}

impl EmailConfig {
    /// Validate `[notifier.email]`; relative file paths are resolved against `base_dir`.
    fn validate(
        e: &RawEmail,
        base_dir: Option<&std::path::Path>,
        problem: &mut dyn FnMut(String, String),
    ) -> Self {
        let rebase = |f: &PathBuf| match base_dir {
            Some(d) if f.is_relative() => d.join(f),
            _ => f.clone(),
        };
        let security = match e.security.as_str() {
            "starttls" => SmtpSecurity::StartTls,
            "tls" => SmtpSecurity::Tls,
            "none" => SmtpSecurity::None,
            other => {
                problem(
                    "notifier.email.security".into(),
                    format!("must be \"starttls\", \"tls\" or \"none\", got {other:?}"),
                );
                SmtpSecurity::StartTls
            }
        };
        if e.to.is_empty() {
            problem(
                "notifier.email.to".into(),
                "list at least one recipient".into(),
            );
        }
        for (i, a) in e.to.iter().chain(std::iter::once(&e.from)).enumerate() {
            if a.parse::<lettre::message::Mailbox>().is_err() {
                let field = if i < e.to.len() {
                    format!("notifier.email.to[{i}]")
                } else {
                    "notifier.email.from".into()
                };
                problem(field, format!("{a:?} is not an e-mail address"));
            }
        }
        if e.username.is_some() != e.password_file.is_some() {
            problem(
                "notifier.email.password_file".into(),
                "username and password_file go together".into(),
            );
        }
        EmailConfig {
            smtp_host: e.smtp_host.clone(),
            smtp_port: e.smtp_port,
            security,
            username: e.username.clone(),
            password_file: e.password_file.as_ref().map(rebase),
            ca_file: e.ca_file.as_ref().map(rebase),
            from: e.from.clone(),
            to: e.to.clone(),
        }
    }
}

impl WebhookConfig {
    /// Validate `[notifier.webhook]`.
    fn validate(w: &RawWebhook, problem: &mut dyn FnMut(String, String)) -> Self {
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            problem(
                "notifier.webhook.url".into(),
                "must be an http:// or https:// URL".into(),
            );
        }
        if w.attempts == 0 {
            problem(
                "notifier.webhook.attempts".into(),
                "must be at least 1".into(),
            );
        }
        WebhookConfig {
            url: w.url.clone(),
            attempts: w.attempts.max(1),
            timeout: duration("webhook.timeout", &w.timeout, problem),
        }
    }
}

impl CommandConfig {
    /// Validate `[notifier.command]`.
    fn validate(c: &RawCommand, problem: &mut dyn FnMut(String, String)) -> Self {
        if c.program.trim().is_empty() {
            problem(
                "notifier.command.program".into(),
                "must name a program".into(),
            );
        }
        CommandConfig {
            program: c.program.clone(),
            args: c.args.clone(),
            timeout: duration("command.timeout", &c.timeout, problem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_errors_name_the_field() {
        let raw: RawNotifierConfig = serde_json::from_value(json!({
            "group_window": "soon", "max_per_hour": 0,
            "email": {"smtp_host": "h", "from": "not an address", "to": [], "security": "ssl"},
            "webhook": {"url": "ftp://x"}
        }))
        .unwrap();
        let mut paths = Vec::new();
        NotifierConfig::validate(&raw, None, &mut |p, _| paths.push(p));
        for want in [
            "notifier.group_window",
            "notifier.max_per_hour",
            "notifier.email.security",
            "notifier.email.to",
            "notifier.email.from",
            "notifier.webhook.url",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "{want} missing from {paths:?}"
            );
        }
    }
}
