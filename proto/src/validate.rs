//! Validation of untrusted input into [`Notice`]s.
//!
//! Every violation is reported (not only the first), each with a JSON Pointer (RFC 6901) `path`,
//! a [`Rule`] callers can branch on, and a message a provider's engineer can act on. Nothing here
//! panics on any input.

use serde::Serialize;
use serde_json::Value;

use crate::check_digit;
use crate::notice::{Notice, EVENT_TYPE, MAX_KEYS, SPEC_VERSION};

/// Size and count limits. The defaults are the protocol's; a relay may lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single notice, in bytes of JSON as received (default 8 KiB).
    pub max_notice_bytes: usize,
    /// Most notices in one batch (default 1,000).
    pub max_batch_notices: usize,
    /// Largest batch body in bytes (default 4 MiB).
    pub max_batch_bytes: usize,
    /// Most addressee numbers in `data.keys.atena_no` (default [`MAX_KEYS`] = 100).
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_notice_bytes: 8 * 1024,
            max_batch_notices: 1_000,
            max_batch_bytes: 4 * 1024 * 1024,
            max_keys: MAX_KEYS,
        }
    }
}

/// Which rule a violation broke. Stable: clients may branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The bytes are not JSON (or not UTF-8).
    Syntax,
    /// A value has the wrong JSON type.
    Type,
    /// A required member is missing.
    Required,
    /// A member that the protocol does not define.
    UnknownField,
    /// A string does not have the required format.
    Format,
    /// A member must have one fixed value.
    Constant,
    /// The notice or batch is too large.
    TooLarge,
    /// Too many items (keys, batch entries).
    TooMany,
    /// Something that looks like an individual number (個人番号).
    PersonalData,
    /// Two members disagree (e.g. `subject` and `data.interface_id`).
    Inconsistent,
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON Pointer to the offending value (`""` is the whole notice).
    pub path: String,
    /// The rule broken.
    pub rule: Rule,
    /// What to fix, for a person.
    pub message: String,
}

impl Violation {
    fn new(path: impl Into<String>, rule: Rule, message: impl Into<String>) -> Self {
        Self { path: path.into(), rule, message: message.into() }
    }
}

/// Parse and validate one notice from bytes.
pub fn parse_notice(bytes: &[u8], limits: &Limits) -> Result<Notice, Vec<Violation>> {
    if bytes.len() > limits.max_notice_bytes {
        return Err(vec![Violation::new(
            "",
            Rule::TooLarge,
            format!("notice is {} bytes; the limit is {} bytes", bytes.len(), limits.max_notice_bytes),
        )]);
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| vec![Violation::new("", Rule::Syntax, format!("not valid JSON: {e}"))])?;
    check_value(&value, limits)
}

/// Validate an already-parsed JSON value as a notice. The size limit applies to its compact
/// serialization.
pub fn check_value(value: &Value, limits: &Limits) -> Result<Notice, Vec<Violation>> {
    let mut v = Vec::new();
    let size = serde_json::to_vec(value).map(|b| b.len()).unwrap_or(usize::MAX);
    if size > limits.max_notice_bytes {
        v.push(Violation::new(
            "",
            Rule::TooLarge,
            format!("notice is {size} bytes; the limit is {} bytes", limits.max_notice_bytes),
        ));
    }
    personal_data_guard(value, &mut String::new(), &mut v);
    if !value.is_object() {
        v.push(Violation::new("", Rule::Type, "a notice must be a JSON object"));
        return Err(v);
    }
    if let Some(n) = value.pointer("/data/keys/atena_no").and_then(Value::as_array).map(Vec::len) {
        if n > limits.max_keys {
            v.push(Violation::new(
                "/data/keys/atena_no",
                Rule::TooMany,
                format!("{n} addressee numbers; at most {} per notice (send several notices)", limits.max_keys),
            ));
        }
    }
    match serde_json::from_value::<Notice>(value.clone()) {
        Ok(n) => {
            cross_field(&n, &mut v);
            if v.is_empty() { Ok(n) } else { Err(v) }
        }
        Err(e) => {
            v.push(Violation::new("", Rule::Format, e.to_string()));
            Err(v)
        }
    }
}

fn cross_field(n: &Notice, v: &mut Vec<Violation>) {
    if n.specversion != SPEC_VERSION {
        v.push(Violation::new("/specversion", Rule::Constant, format!("specversion must be \"{SPEC_VERSION}\"")));
    }
    if n.event_type != EVENT_TYPE {
        v.push(Violation::new("/type", Rule::Constant, format!("type must be \"{EVENT_TYPE}\"")));
    }
    if n.subject != n.data.interface_id {
        v.push(Violation::new("/subject", Rule::Inconsistent, "subject must equal data.interface_id"));
    }
    if n.data.interface_id.business_id() != n.data.provider {
        v.push(Violation::new(
            "/data/provider",
            Rule::Inconsistent,
            "data.provider must equal the first three digits of data.interface_id",
        ));
    }
    if n.source.provider != n.data.provider || n.source.municipality != n.data.municipality_code {
        v.push(Violation::new(
            "/source",
            Rule::Inconsistent,
            "source must be urn:jp:lg:<data.municipality_code>:<data.provider>",
        ));
    }
    if let Some(ct) = &n.datacontenttype {
        if ct != "application/json" {
            v.push(Violation::new("/datacontenttype", Rule::Constant, "datacontenttype must be \"application/json\" when present"));
        }
    }
}

/// Walk every key and value; any 12-digit run passing the 個人番号 check digit is a violation.
/// `/id` is exempt: it is a UUID, validated as such, whose random last group would otherwise be
/// refused about once in 3,000 notices.
fn personal_data_guard(value: &Value, path: &mut String, v: &mut Vec<Violation>) {
    let flag = |s: &str, path: &str, v: &mut Vec<Violation>| {
        if !check_digit::find_individual_numbers(s).is_empty() {
            v.push(Violation::new(
                path,
                Rule::PersonalData,
                "contains a 12-digit number that passes the individual-number (個人番号) check digit; notices must never carry personal data",
            ));
        }
    };
    match value {
        Value::String(s) => {
            if path != "/id" {
                flag(s, path, v);
            }
        }
        Value::Number(n) => flag(&n.to_string(), path, v),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                personal_data_guard(item, path, v);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                flag(k, path, v);
                personal_data_guard(item, path, v);
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// A request body: one notice (a JSON object) or a batch (a JSON array of notices).
#[derive(Debug)]
pub enum Payload {
    /// The body was one object.
    Single(Result<Notice, Vec<Violation>>),
    /// The body was an array; one result per item, in order.
    Batch(Vec<Result<Notice, Vec<Violation>>>),
}

/// Why a whole body was refused before looking at its items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Larger than [`Limits::max_batch_bytes`].
    #[error("body is {bytes} bytes; the limit is {limit} bytes (split the batch)")]
    TooLarge {
        /// Body size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// More than [`Limits::max_batch_notices`] items.
    #[error("batch has {count} notices; the limit is {limit} (split the batch)")]
    TooMany {
        /// Items in the batch.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, not UTF-8, or nested too deeply.
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    /// JSON, but neither an object nor an array.
    #[error("body must be a notice (JSON object) or a batch (JSON array of notices)")]
    Shape,
    /// An empty array.
    #[error("batch is empty; send at least one notice")]
    Empty,
}

impl PayloadError {
    /// The rule this maps to, for uniform error bodies.
    pub fn rule(&self) -> Rule {
        match self {
            PayloadError::TooLarge { .. } => Rule::TooLarge,
            PayloadError::TooMany { .. } => Rule::TooMany,
            PayloadError::Syntax(_) => Rule::Syntax,
            PayloadError::Shape => Rule::Type,
            PayloadError::Empty => Rule::TooMany,
        }
    }
}

/// Parse a request body holding one notice or a batch.
pub fn parse_payload(bytes: &[u8], limits: &Limits) -> Result<Payload, PayloadError> {
    if bytes.len() > limits.max_batch_bytes {
        return Err(PayloadError::TooLarge { bytes: bytes.len(), limit: limits.max_batch_bytes });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| PayloadError::Syntax(e.to_string()))?;
    match value {
        Value::Object(_) => Ok(Payload::Single(check_value(&value, limits))),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(PayloadError::Empty);
            }
            if items.len() > limits.max_batch_notices {
                return Err(PayloadError::TooMany { count: items.len(), limit: limits.max_batch_notices });
            }
            Ok(Payload::Batch(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        check_value(item, limits).map_err(|vs| {
                            let _ = i;
                            vs
                        })
                    })
                    .collect(),
            ))
        }
        _ => Err(PayloadError::Shape),
    }
}
