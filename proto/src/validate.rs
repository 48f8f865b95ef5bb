//! Validation of untrusted input into [`Notice`]s.
//!
//! Every violation is reported (not only the first), each with a JSON Pointer (RFC 6901) `path`,
//! a [`Rule`] callers can branch on, and a message a provider's engineer can act on. The checks
//! are a field-by-field walk over the parsed JSON (a tree borrowing from the text) rather than
//! serde's derive, because serde stops at the first error and cannot say *where* it was.
//!
//! What is checked, in terms of the [`Rule`] reported:
//!
//! | rule | what |
//! | --- | --- |
//! | [`Rule::Syntax`] | not UTF-8, not JSON, trailing bytes, nested deeper than serde_json's limit (128), a member named twice in one object |
//! | [`Rule::Type`] | a member has the wrong JSON type (the notice, `data`, `data.keys` are objects; `atena_no` an array; the rest strings) |
//! | [`Rule::Required`] | a required member is missing (every member but `datacontenttype` and `data.keys`) |
//! | [`Rule::UnknownField`] | a member the protocol does not define, at the top level, in `data`, in `data.keys` |
//! | [`Rule::Format`] | a string is outside its length bounds or fails its newtype's format ([`std::str::FromStr`]) |
//! | [`Rule::Constant`] | `specversion` is not `1.0`, `type` not [`EVENT_TYPE`], `datacontenttype` not `application/json` |
//! | [`Rule::TooLarge`] | the notice is over [`Limits::max_notice_bytes`] |
//! | [`Rule::TooMany`] | `data.keys.atena_no` has more than [`Limits::max_keys`] numbers |
//! | [`Rule::PersonalData`] | a string, number or member name holds a 12-digit individual number (個人番号) |
//! | [`Rule::Inconsistent`] | `subject` ≠ `data.interface_id`; `source` ≠ `data`; `data.provider` ≠ the interface's business id |
//!
//! Nothing here panics on any input, and nothing recurses on the input's depth except
//! serde_json's parser, which stops at 128 levels with an error.
//!
//! Messages never repeat an individual number back: the validator masks it (`************`), since
//! messages end up in logs and HTTP answers.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::check_digit;
use crate::notice::{
    AtenaNo, BusinessId, ChangeKind, EVENT_TYPE, InterfaceId, InterfaceVersion, Keys, MAX_KEYS,
    MunicipalityCode, Notice, NoticeData, NoticeId, OffsetTimestamp, ParseError, SPEC_VERSION,
    Sequence, Source,
};
use crate::strict_json::{Json, Object};

/// The only accepted `datacontenttype`, when present.
pub const DATA_CONTENT_TYPE: &str = "application/json";

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

/// Which rule a violation broke. Stable: clients may branch on it. Serializes as its
/// snake_case name (`"unknown_field"`), the same string [`Rule::as_str`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// A string does not have the required format (or length).
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

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 10] = [
        Rule::Syntax,
        Rule::Type,
        Rule::Required,
        Rule::UnknownField,
        Rule::Format,
        Rule::Constant,
        Rule::TooLarge,
        Rule::TooMany,
        Rule::PersonalData,
        Rule::Inconsistent,
    ];

    /// The wire name, as serialized (`"personal_data"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Rule::Syntax => "syntax",
            Rule::Type => "type",
            Rule::Required => "required",
            Rule::UnknownField => "unknown_field",
            Rule::Format => "format",
            Rule::Constant => "constant",
            Rule::TooLarge => "too_large",
            Rule::TooMany => "too_many",
            Rule::PersonalData => "personal_data",
            Rule::Inconsistent => "inconsistent",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One violation. Serializes as `{"path": "/data/updated_at", "rule": "format", "message": "..."}`,
/// the shape the relay returns in HTTP error bodies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Violation {
    /// JSON Pointer (RFC 6901) to the offending value (`""` is the whole notice). A member name
    /// that holds an individual number appears masked, like messages.
    pub path: String,
    /// The rule broken.
    pub rule: Rule,
    /// What to fix, for a person. Never contains an individual number.
    pub message: String,
}

impl Violation {
    /// A violation; the message is masked of individual numbers (個人番号) on the way in.
    pub fn new(path: impl Into<String>, rule: Rule, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match check_digit::redact_individual_numbers(&message) {
            Cow::Borrowed(_) => message,
            Cow::Owned(masked) => masked,
        };
        let path = path.into();
        let path = match check_digit::redact_individual_numbers(&path) {
            Cow::Borrowed(_) => path,
            Cow::Owned(masked) => masked,
        };
        Self {
            path,
            rule,
            message,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(notice)"
        } else {
            &self.path
        };
        write!(f, "{path}: {} ({})", self.message, self.rule)
    }
}

/// Parse and validate one notice from bytes. The size limit applies to the bytes as received.
///
/// Every violation is returned, sorted by path. A body larger than both
/// [`Limits::max_notice_bytes`] and [`Limits::max_batch_bytes`] is refused without parsing.
pub fn parse_notice(bytes: &[u8], limits: &Limits) -> Result<Notice, Vec<Violation>> {
    parse_with(bytes, limits, check_sized)
}

fn parse_with<N>(
    bytes: &[u8],
    limits: &Limits,
    check_sized: ItemCheck<N>,
) -> Result<N, Vec<Violation>> {
    if bytes.len() > limits.max_notice_bytes.max(limits.max_batch_bytes) {
        return Err(vec![too_large(bytes.len(), limits)]);
    }
    let value = match decode(bytes) {
        Ok(value) => value,
        Err(message) => {
            let mut v = Vec::new();
            if bytes.len() > limits.max_notice_bytes {
                v.push(too_large(bytes.len(), limits));
            }
            v.push(Violation::new("", Rule::Syntax, message));
            return Err(v);
        }
    };
    check_sized(&value, bytes.len(), limits)
}

/// Validate an already-parsed JSON value as a notice. The size limit applies to its compact
/// serialization.
pub fn check_value(value: &Value, limits: &Limits) -> Result<Notice, Vec<Violation>> {
    let tree = Json::from_value(value);
    check_sized(&tree, compact_len(&tree), limits)
}

fn too_large(size: usize, limits: &Limits) -> Violation {
    Violation::new(
        "",
        Rule::TooLarge,
        format!(
            "notice is {size} bytes; the limit is {} bytes (a notice carries ids and timestamps, never data)",
            limits.max_notice_bytes
        ),
    )
}

/// UTF-8 check, optional byte-order mark (written by some .NET and Java tools; RFC 8259 lets a
/// parser ignore it), then JSON.
fn decode(bytes: &[u8]) -> Result<Json<'_>, String> {
    let text = utf8(bytes)?;
    crate::strict_json::value(text).map_err(|e| json_error(&e))
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8: invalid byte sequence at byte offset {}",
            e.valid_up_to()
        )
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("recursion limit exceeded") {
        format!(
            "not valid JSON: nested more than 127 levels deep at line {} column {} (a notice is 4 levels deep)",
            e.line(),
            e.column()
        )
    } else {
        format!("not valid JSON: {text}")
    }
}

/// Length of `value`'s compact serialization, computed without recursion so that any value a
/// caller built (however deep) is safe to measure.
fn compact_len(value: &Json<'_>) -> usize {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        total = total.saturating_add(match v {
            Json::Null => 4,
            Json::Bool(true) => 4,
            Json::Bool(false) => 5,
            Json::Number(n) => n.to_string().len(),
            Json::String(s) => string_len(s),
            Json::Array(items) => {
                stack.extend(items.iter());
                2 + items.len().saturating_sub(1)
            }
            Json::Object(map) => {
                stack.extend(map.values());
                // Braces, a colon per member, commas between members.
                2 + map.len()
                    + map.len().saturating_sub(1)
                    + map.keys().map(string_len).sum::<usize>()
            }
        });
    }
    total
}

fn string_len(s: &str) -> usize {
    serde_json::to_string(s)
        .map(|q| q.len())
        .unwrap_or(s.len() + 2)
}

/// RFC 6901 escaping of one reference token.
/// What tells a kind of notice apart in its envelope ([`Check::envelope`]).
struct Kind<'a> {
    /// The `type` member's field and its one allowed value.
    type_field: &'a Field,
    event_type: &'a str,
    /// Whether `sequence` must be present.
    sequence_required: bool,
    /// The violation message of a missing `data`.
    data_hint: &'a str,
}

/// Where a notice comes from (`data`'s first members), each `None` when it has a violation.
struct Origin {
    interface_id: Option<InterfaceId>,
    interface_version: Option<InterfaceVersion>,
    municipality_code: Option<MunicipalityCode>,
    provider: Option<BusinessId>,
}

/// A notice's envelope members, all valid.
struct Envelope<D> {
    id: NoticeId,
    source: Source,
    time: OffsetTimestamp,
    subject: InterfaceId,
    /// `None`: absent (allowed only where `sequence` is optional).
    sequence: Option<Sequence>,
    datacontenttype: Option<String>,
    data: D,
}

/// One step of a JSON Pointer.
#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// The JSON Pointer of `path` (`""` for the root).
fn pointer(path: &[Segment<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        s.push('/');
        match seg {
            Segment::Key(k) => s.push_str(&escape(k)),
            Segment::Index(i) => s.push_str(&i.to_string()),
        }
    }
    s
}

fn escape(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

fn json_type(v: &Json<'_>) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A string member: its name as written in messages, its length bounds in characters (JSON
/// Schema's `minLength`/`maxLength` count characters too), and what it holds.
struct Field {
    name: &'static str,
    min: usize,
    max: usize,
    hint: &'static str,
}

const TOP_MEMBERS: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "sequence",
    "datacontenttype",
    "data",
];
const DATA_MEMBERS: [&str; 7] = [
    "interface_id",
    "interface_version",
    "municipality_code",
    "provider",
    "updated_at",
    "change",
    "keys",
];
const KEYS_MEMBERS: [&str; 1] = ["atena_no"];

const SPECVERSION: Field = Field {
    name: "specversion",
    min: 3,
    max: 3,
    hint: "the CloudEvents version, \"1.0\"",
};
const ID: Field = Field {
    name: "id",
    min: 36,
    max: 36,
    hint: "a UUID in lowercase hyphenated form, v7 recommended (the de-duplication key)",
};
const SOURCE: Field = Field {
    name: "source",
    min: 20,
    max: 20,
    hint: "urn:jp:lg:<municipality code>:<business id>, e.g. urn:jp:lg:131016:001",
};
const TYPE: Field = Field {
    name: "type",
    min: 23,
    max: 23,
    hint: "the event type \"jp.lg.shirase.change.v1\"",
};
const TIME: Field = Field {
    name: "time",
    min: 20,
    max: 35,
    hint: "when the notice was emitted, RFC 3339 with offset, e.g. 2026-11-25T10:15:30+09:00",
};
const SUBJECT: Field = Field {
    name: "subject",
    min: 9,
    max: 9,
    hint: "the interface id (連携ID), e.g. 001o05-00",
};
const SEQUENCE: Field = Field {
    name: "sequence",
    min: 20,
    max: 20,
    hint: "the per-interface counter as 20 zero-padded digits, e.g. 00000000000000000042",
};
const DATACONTENTTYPE: Field = Field {
    name: "datacontenttype",
    min: 16,
    max: 16,
    hint: "\"application/json\" (or omit it)",
};
const INTERFACE_ID: Field = Field {
    name: "data.interface_id",
    min: 9,
    max: 9,
    hint: "the interface id (連携ID) NNNoNN-NN, e.g. 001o05-00",
};
const INTERFACE_VERSION: Field = Field {
    name: "data.interface_version",
    min: 1,
    max: 11,
    hint: "the interface version (版数), e.g. 1.0",
};
const MUNICIPALITY_CODE: Field = Field {
    name: "data.municipality_code",
    min: 6,
    max: 6,
    hint: "the 6-digit municipality code with JIS X 0402 check digit, e.g. 131016",
};
const PROVIDER: Field = Field {
    name: "data.provider",
    min: 3,
    max: 3,
    hint: "the providing business id (業務ID), 3 digits, e.g. 001",
};
const UPDATED_AT: Field = Field {
    name: "data.updated_at",
    min: 20,
    max: 35,
    hint: "the DB update timestamp, RFC 3339 with offset, e.g. 2026-11-25T10:15:30.123+09:00",
};
const CHANGE: Field = Field {
    name: "data.change",
    min: 6,
    max: 11,
    hint: "one of update, retroactive, delete",
};
const ATENA_NO: Field = Field {
    name: "data.keys.atena_no[]",
    min: 15,
    max: 15,
    hint: "an addressee number (宛名番号), 15 digits, zero-padded",
};

/// The walk's state: the violations found so far.
struct Check<'l> {
    limits: &'l Limits,
    out: Vec<Violation>,
}

impl Check<'_> {
    fn push(&mut self, path: impl Into<String>, rule: Rule, message: impl Into<String>) {
        self.out.push(Violation::new(path, rule, message));
    }

    /// Report members of `obj` not in `known`.
    fn unknown_members(&mut self, obj: &Object<'_>, parent: &str, where_: &str, known: &[&str]) {
        for key in obj.keys() {
            if !known.contains(&key) {
                let shown = crate::notice::truncate(key);
                self.push(
                    format!("{parent}/{}", escape(key)),
                    Rule::UnknownField,
                    format!(
                        "unknown member {shown:?} in {where_}; the members are {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// A required or optional string member parsed with its newtype's [`FromStr`].
    fn parsed<T: FromStr<Err = ParseError>>(
        &mut self,
        obj: &Object<'_>,
        parent: &str,
        key: &str,
        f: &Field,
    ) -> Option<T> {
        // Paths are built only for a violation: validation runs on every notice ingested.
        let path = || format!("{parent}/{key}");
        let Some(value) = obj.get(key) else {
            self.push(
                path(),
                Rule::Required,
                format!("{} is required: {}", f.name, f.hint),
            );
            return None;
        };
        self.parse_value(value, path, f)
    }

    /// Parse `value` as `T`; `path` builds the member's path for a violation.
    fn parse_value<T: FromStr<Err = ParseError>>(
        &mut self,
        value: &Json<'_>,
        path: impl Fn() -> String,
        f: &Field,
    ) -> Option<T> {
        let Json::String(s) = value else {
            self.push(
                path(),
                Rule::Type,
                format!(
                    "{} must be a string ({}), got {}",
                    f.name,
                    f.hint,
                    json_type(value)
                ),
            );
            return None;
        };
        let n = s.chars().count();
        if n < f.min || n > f.max {
            let bounds = if f.min == f.max {
                format!("exactly {} characters", f.min)
            } else {
                format!("{} to {} characters", f.min, f.max)
            };
            // The newtype's message says what is wrong more precisely (a timestamp without
            // offset is merely "too short" otherwise); it is cheap and quotes at most 64
            // characters, but a huge string only needs its length.
            let detail = match (n <= 64).then(|| s.parse::<T>()) {
                Some(Err(e)) => e.message,
                _ => f.hint.to_owned(),
            };
            self.push(
                path(),
                Rule::Format,
                format!("{} must be {bounds} long, got {n}: {detail}", f.name),
            );
            return None;
        }
        match s.parse::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                // Newtype messages that already start with the member's name ("sequence must
                // be ...") need no prefix; the others ("interface id (連携ID) must ...") say
                // which member through it.
                let short = f.name.rsplit('.').next().unwrap_or(f.name);
                let message = if e.message.starts_with(&format!("{short} ")) {
                    e.message
                } else {
                    format!("{}: {}", f.name, e.message)
                };
                self.push(path(), Rule::Format, message);
                None
            }
        }
    }

    /// The optional `datacontenttype`: `Some(None)` when absent, `Some(Some(..))` when it is the
    /// one allowed value, `None` (with a violation) otherwise.
    fn datacontenttype(&mut self, obj: &Object<'_>) -> Option<Option<String>> {
        if !obj.contains_key("datacontenttype") {
            return Some(None);
        }
        self.constant(
            obj,
            "datacontenttype",
            &DATACONTENTTYPE,
            DATA_CONTENT_TYPE,
            false,
        )
        .map(|()| Some(DATA_CONTENT_TYPE.to_owned()))
    }

    /// A member with one allowed value. `Some(())` when present and right, `None` otherwise.
    fn constant(
        &mut self,
        obj: &Object<'_>,
        key: &str,
        f: &Field,
        want: &str,
        required: bool,
    ) -> Option<()> {
        let path = || format!("/{key}");
        let Some(value) = obj.get(key) else {
            if required {
                self.push(
                    path(),
                    Rule::Required,
                    format!("{} is required: {}", f.name, f.hint),
                );
            }
            return None;
        };
        let Json::String(s) = value else {
            self.push(
                path(),
                Rule::Type,
                format!(
                    "{} must be a string ({}), got {}",
                    f.name,
                    f.hint,
                    json_type(value)
                ),
            );
            return None;
        };
        if s != want {
            let shown = crate::notice::truncate(s);
            self.push(
                path(),
                Rule::Constant,
                format!("{} must be {want:?}, got {shown:?}", f.name),
            );
            return None;
        }
        Some(())
    }

    fn object<'v>(
        &mut self,
        value: &'v Json<'v>,
        path: &str,
        what: &str,
    ) -> Option<&'v Object<'v>> {
        match value {
            Json::Object(map) => Some(map),
            other => {
                self.push(
                    path,
                    Rule::Type,
                    format!("{what} must be an object, got {}", json_type(other)),
                );
                None
            }
        }
    }

    fn change(&mut self, obj: &Object<'_>) -> Option<ChangeKind> {
        let path = "/data/change";
        let Some(value) = obj.get("change") else {
            self.push(
                path,
                Rule::Required,
                format!("{} is required: {}", CHANGE.name, CHANGE.hint),
            );
            return None;
        };
        let Json::String(s) = value else {
            self.push(
                path,
                Rule::Type,
                format!(
                    "data.change must be a string ({}), got {}",
                    CHANGE.hint,
                    json_type(value)
                ),
            );
            return None;
        };
        match s.as_ref() {
            "update" => Some(ChangeKind::Update),
            "retroactive" => Some(ChangeKind::Retroactive),
            "delete" => Some(ChangeKind::Delete),
            other => {
                let shown = crate::notice::truncate(other);
                self.push(
                    path,
                    Rule::Format,
                    format!(
                        "data.change must be one of update, retroactive, delete, got {shown:?}"
                    ),
                );
                None
            }
        }
    }

    fn keys(&mut self, value: &Json<'_>) -> Option<Keys> {
        let Json::Object(obj) = value else {
            self.push(
                "/data/keys",
                Rule::Type,
                format!(
                    "data.keys must be an object, got {} (omit data.keys when there are no keys)",
                    json_type(value)
                ),
            );
            return None;
        };
        self.unknown_members(
            obj,
            "/data/keys",
            "data.keys (only whitelisted key names exist)",
            &KEYS_MEMBERS,
        );
        let path = "/data/keys/atena_no";
        let Some(list) = obj.get("atena_no") else {
            self.push(path, Rule::Required, "data.keys.atena_no is required when data.keys is present: a list of addressee numbers (宛名番号)");
            return None;
        };
        let Json::Array(items) = list else {
            self.push(
                path,
                Rule::Type,
                format!(
                    "data.keys.atena_no must be an array of addressee numbers, got {}",
                    json_type(list)
                ),
            );
            return None;
        };
        let mut ok = true;
        if items.len() > self.limits.max_keys {
            ok = false;
            self.push(
                path,
                Rule::TooMany,
                format!(
                    "data.keys.atena_no has {} addressee numbers; at most {} per notice (send several notices, or none: the agent then pulls by time)",
                    items.len(),
                    self.limits.max_keys
                ),
            );
        }
        let mut atena_no = Vec::with_capacity(items.len().min(self.limits.max_keys));
        for (i, item) in items.iter().enumerate() {
            match self.parse_value::<AtenaNo>(item, || format!("{path}/{i}"), &ATENA_NO) {
                Some(a) => atena_no.push(a),
                None => ok = false,
            }
        }
        ok.then_some(Keys { atena_no })
    }

    fn data(&mut self, value: &Json<'_>) -> Option<NoticeData> {
        let obj = self.object(value, "/data", "data")?;
        self.unknown_members(obj, "/data", "data", &DATA_MEMBERS);
        let origin = self.origin(obj);
        let updated_at = self.parsed::<OffsetTimestamp>(obj, "/data", "updated_at", &UPDATED_AT);
        let change = self.change(obj);
        let keys = match obj.get("keys") {
            None => Some(None),
            Some(k) => self.keys(k).map(Some),
        };
        Some(NoticeData {
            interface_id: origin.interface_id?,
            interface_version: origin.interface_version?,
            municipality_code: origin.municipality_code?,
            provider: origin.provider?,
            updated_at: updated_at?,
            change: change?,
            keys: keys?,
        })
    }

    /// The members of `data` that say where a notice comes from, shared by both kinds of
    /// notice, with their consistency rule.
    fn origin(&mut self, obj: &Object<'_>) -> Origin {
        let interface_id = self.parsed::<InterfaceId>(obj, "/data", "interface_id", &INTERFACE_ID);
        let interface_version =
            self.parsed::<InterfaceVersion>(obj, "/data", "interface_version", &INTERFACE_VERSION);
        let municipality_code =
            self.parsed::<MunicipalityCode>(obj, "/data", "municipality_code", &MUNICIPALITY_CODE);
        let provider = self.parsed::<BusinessId>(obj, "/data", "provider", &PROVIDER);
        self.provider_consistency(&interface_id, &provider);
        Origin {
            interface_id,
            interface_version,
            municipality_code,
            provider,
        }
    }

    /// `data.provider` = the interface id's business id.
    fn provider_consistency(&mut self, i: &Option<InterfaceId>, p: &Option<BusinessId>) {
        if let (Some(i), Some(p)) = (i, p)
            && i.business_id() != *p
        {
            self.push(
                "/data/provider",
                Rule::Inconsistent,
                format!(
                    "data.provider is {p} but data.interface_id {i} belongs to business id {}; they must be equal",
                    i.business_id()
                ),
            );
        }
    }

    fn notice(&mut self, value: &Json<'_>) -> Option<Notice> {
        let kind = Kind {
            type_field: &TYPE,
            event_type: EVENT_TYPE,
            sequence_required: true,
            data_hint: "data is required: an object with interface_id, interface_version, municipality_code, provider, updated_at, change and optionally keys",
        };
        let e = self.envelope(value, &kind, Self::data)?;
        Some(Notice {
            specversion: SPEC_VERSION.to_owned(),
            id: e.id,
            source: e.source,
            event_type: EVENT_TYPE.to_owned(),
            time: e.time,
            subject: e.subject,
            sequence: e.sequence?,
            datacontenttype: e.datacontenttype,
            data: e.data,
        })
    }

    /// The envelope both kinds of notice share: the members, each parsed with its own
    /// violations, then `data` with `read_data`, then the envelope's consistency rules.
    /// `None` when anything has a violation.
    fn envelope<D>(
        &mut self,
        value: &Json<'_>,
        kind: &Kind<'_>,
        read_data: impl FnOnce(&mut Self, &Json<'_>) -> Option<D>,
    ) -> Option<Envelope<D>> {
        let obj = self.object(value, "", "a notice")?;
        self.unknown_members(
            obj,
            "",
            "the notice (CloudEvents extensions other than sequence are not accepted)",
            &TOP_MEMBERS,
        );
        let specversion = self.constant(obj, "specversion", &SPECVERSION, SPEC_VERSION, true);
        let id = self.parsed::<NoticeId>(obj, "", "id", &ID);
        let source = self.parsed::<Source>(obj, "", "source", &SOURCE);
        let event_type = self.constant(obj, "type", kind.type_field, kind.event_type, true);
        let time = self.parsed::<OffsetTimestamp>(obj, "", "time", &TIME);
        let subject = self.parsed::<InterfaceId>(obj, "", "subject", &SUBJECT);
        let sequence = if kind.sequence_required || obj.contains_key("sequence") {
            self.parsed::<Sequence>(obj, "", "sequence", &SEQUENCE)
                .map(Some)
        } else {
            Some(None)
        };
        let datacontenttype = self.datacontenttype(obj);
        let data = match obj.get("data") {
            Some(d) => read_data(self, d),
            None => {
                self.push("/data", Rule::Required, kind.data_hint);
                None
            }
        };
        self.envelope_consistency(obj, &subject, &source);
        specversion?;
        event_type?;
        Some(Envelope {
            id: id?,
            source: source?,
            time: time?,
            subject: subject?,
            sequence: sequence?,
            datacontenttype: datacontenttype?,
            data: data?,
        })
    }

    /// Envelope rules shared by both kinds of notice, each only when both sides parsed
    /// (otherwise the format violation already says what to fix): `subject` =
    /// `data.interface_id`, `source` = `data.municipality_code` and `data.provider`.
    fn envelope_consistency(
        &mut self,
        obj: &Object<'_>,
        subject: &Option<InterfaceId>,
        source: &Option<Source>,
    ) {
        let data_interface = obj
            .get("data")
            .and_then(|d| d.get("interface_id"))
            .and_then(Json::as_str);
        if let (Some(s), Some(i)) = (
            subject,
            data_interface.and_then(|i| i.parse::<InterfaceId>().ok()),
        ) && *s != i
        {
            self.push(
                "/subject",
                Rule::Inconsistent,
                format!("subject is {s} but data.interface_id is {i}; they must be equal"),
            );
        }
        if let Some(src) = source {
            let data_obj = obj.get("data");
            let m = data_obj
                .and_then(|d| d.get("municipality_code"))
                .and_then(Json::as_str)
                .and_then(|m| m.parse::<MunicipalityCode>().ok());
            let p = data_obj
                .and_then(|d| d.get("provider"))
                .and_then(Json::as_str)
                .and_then(|p| p.parse::<BusinessId>().ok());
            if let Some(m) = m
                && m != src.municipality
            {
                self.push(
                    "/source",
                    Rule::Inconsistent,
                    format!("source names municipality {} but data.municipality_code is {m}; they must be equal", src.municipality),
                );
            }
            if let Some(p) = p
                && p != src.provider
            {
                self.push(
                    "/source",
                    Rule::Inconsistent,
                    format!(
                        "source names business id {} but data.provider is {p}; they must be equal",
                        src.provider
                    ),
                );
            }
        }
    }

    /// The personal-data guard: every string, number and member name anywhere in the value, with
    /// an explicit stack so that depth cannot overflow ours. `/id` is exempt: it is a UUID,
    /// validated as such, whose random last group would otherwise be refused about once in
    /// 3,000 notices.
    fn personal_data(&mut self, root: &Json<'_>, exempt: &[&str]) {
        const WHY: &str = "holds a 12-digit number that passes the individual-number (個人番号) check digit; a notice must never carry personal data (remove it)";
        // Iterative (a caller's value may nest deeper than the stack allows). Each entry: a
        // value, how many segments its path has, and its last segment; the JSON Pointer is
        // built only for a violation: this walk runs over every notice ingested.
        let mut path: Vec<Segment<'_>> = Vec::new();
        let mut stack: Vec<(&Json<'_>, usize, Option<Segment<'_>>)> = vec![(root, 0, None)];
        while let Some((value, depth, seg)) = stack.pop() {
            path.truncate(depth.saturating_sub(1));
            if let Some(seg) = seg {
                path.push(seg);
            }
            match value {
                Json::String(s) => {
                    if check_digit::contains_individual_number(s) {
                        let p = pointer(&path);
                        if !exempt.contains(&p.as_str()) {
                            self.push(p, Rule::PersonalData, format!("this string {WHY}"));
                        }
                    }
                }
                Json::Number(n) => {
                    // An integer below 10^11 has fewer than 12 digits.
                    let short = n
                        .as_u64()
                        .map(|u| u < 100_000_000_000)
                        .or_else(|| n.as_i64().map(|i| i.unsigned_abs() < 100_000_000_000))
                        .unwrap_or(false);
                    if !short && check_digit::contains_individual_number(&n.to_string()) {
                        let p = pointer(&path);
                        if !exempt.contains(&p.as_str()) {
                            self.push(p, Rule::PersonalData, format!("this number {WHY}"));
                        }
                    }
                }
                Json::Array(items) => {
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push((item, depth + 1, Some(Segment::Index(i))));
                    }
                }
                Json::Object(map) => {
                    for (k, item) in map.iter().rev() {
                        if check_digit::contains_individual_number(k) {
                            path.push(Segment::Key(k));
                            self.push(
                                pointer(&path),
                                Rule::PersonalData,
                                format!("this member name {WHY}"),
                            );
                            path.pop();
                        }
                        stack.push((item, depth + 1, Some(Segment::Key(k))));
                    }
                }
                Json::Null | Json::Bool(_) => {}
            }
        }
    }
}

/// Validate `value` as a notice whose size is `size` bytes.
fn check_sized(value: &Json<'_>, size: usize, limits: &Limits) -> Result<Notice, Vec<Violation>> {
    check_walk(value, size, limits, Check::notice, &["/id"])
}

/// Validate `value` (`size` bytes) with `walk`, then look for personal data everywhere but
/// the `exempt` paths.
fn check_walk<'l, N>(
    value: &Json<'_>,
    size: usize,
    limits: &'l Limits,
    walk: impl FnOnce(&mut Check<'l>, &Json<'_>) -> Option<N>,
    exempt: &[&str],
) -> Result<N, Vec<Violation>> {
    let mut check = Check {
        limits,
        out: Vec::new(),
    };
    if size > limits.max_notice_bytes {
        check.out.push(too_large(size, limits));
    }
    let notice = walk(&mut check, value);
    check.personal_data(value, exempt);
    finish(check.out, notice)
}

/// The result of a walk: the value when nothing was found, else every violation sorted by path.
fn finish<T>(mut out: Vec<Violation>, parsed: Option<T>) -> Result<T, Vec<Violation>> {
    match parsed {
        Some(n) if out.is_empty() => Ok(n),
        Some(_) | None => {
            if out.is_empty() {
                // Unreachable by construction: every `None` above pushed a violation. Kept so
                // that a future slip refuses the notice rather than accepting it.
                out.push(Violation::new(
                    "",
                    Rule::Format,
                    "the notice could not be read",
                ));
            }
            // Stable: violations at one path keep the walk's order.
            out.sort_by(|a, b| a.path.cmp(&b.path));
            out.dedup();
            Err(out)
        }
    }
}

/// A request body: one notice (a JSON object) or a batch (a JSON array of notices).
// A public shape other crates match on; boxing `Single` would change it for a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Payload<N = Notice> {
    /// The body was one object.
    Single(Result<N, Vec<Violation>>),
    /// The body was an array; one result per item, in order.
    Batch(Vec<Result<N, Vec<Violation>>>),
}

impl<N> Payload<N> {
    /// The per-notice results in order (one for a single notice).
    pub fn results(&self) -> &[Result<N, Vec<Violation>>] {
        match self {
            Payload::Single(r) => std::slice::from_ref(r),
            Payload::Batch(rs) => rs,
        }
    }

    /// The per-notice results in order, owned.
    pub fn into_results(self) -> Vec<Result<N, Vec<Violation>>> {
        match self {
            Payload::Single(r) => vec![r],
            Payload::Batch(rs) => rs,
        }
    }
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
    #[error("body is {0}")]
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

    /// The error as a [`Violation`] of the whole body (path `""`), for uniform error bodies.
    pub fn violation(&self) -> Violation {
        Violation::new("", self.rule(), self.to_string())
    }
}

/// Parse a request body holding one notice (an object) or a batch (an array of notices).
///
/// The body is refused as a whole when it is over [`Limits::max_batch_bytes`], is not UTF-8 or
/// JSON (a member named twice in one object counts as unreadable JSON), is empty, or holds more
/// than [`Limits::max_batch_notices`] items. Otherwise each item gets its own result, in order;
/// an item's size is its bytes as written in the body.
pub fn parse_payload(bytes: &[u8], limits: &Limits) -> Result<Payload, PayloadError> {
    payload_with(bytes, limits, check_sized).map(|(p, _)| p)
}

/// [`parse_payload`], also returning where each item lies in `bytes` (one range per result, in
/// order): a valid item's bytes there are exactly the notice that was validated, so they can be
/// stored as received instead of re-encoding the [`Notice`].
pub fn parse_payload_spans(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Payload, Vec<Range<usize>>), PayloadError> {
    payload_with(bytes, limits, check_sized)
}

/// A checker of one item: its parsed JSON and its size as received.
type ItemCheck<N> = fn(&Json<'_>, usize, &Limits) -> Result<N, Vec<Violation>>;

fn payload_with<N>(
    bytes: &[u8],
    limits: &Limits,
    check_sized: ItemCheck<N>,
) -> Result<(Payload<N>, Vec<Range<usize>>), PayloadError> {
    if bytes.len() > limits.max_batch_bytes {
        return Err(PayloadError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_batch_bytes,
        });
    }
    let text = utf8(bytes).map_err(PayloadError::Syntax)?;
    // Where `part` (a slice of `text`, itself a slice of `bytes`) lies in `bytes`.
    let span = |part: &str| {
        let start = part.as_ptr() as usize - bytes.as_ptr() as usize;
        start..start + part.len()
    };
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {
            let value = crate::strict_json::value(text)
                .map_err(|e| PayloadError::Syntax(json_error(&e)))?;
            Ok((
                Payload::Single(check_sized(&value, bytes.len(), limits)),
                vec![span(text.trim())],
            ))
        }
        Some(b'[') => {
            // Raw items first: their count is checked before any is parsed, and each item's
            // size is its own bytes as received.
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| PayloadError::Syntax(json_error(&e)))?;
            if items.is_empty() {
                return Err(PayloadError::Empty);
            }
            if items.len() > limits.max_batch_notices {
                return Err(PayloadError::TooMany {
                    count: items.len(),
                    limit: limits.max_batch_notices,
                });
            }
            let mut results = Vec::with_capacity(items.len());
            let mut spans = Vec::with_capacity(items.len());
            for (i, raw) in items.iter().enumerate() {
                // Capturing a raw item does not apply serde_json's depth limit; parsing it does.
                // A body that is not JSON we can read is refused as a whole, like any other.
                let value = crate::strict_json::value(raw.get()).map_err(|e| {
                    PayloadError::Syntax(format!("{} (in batch item {i})", json_error(&e)))
                })?;
                results.push(check_sized(&value, raw.get().len(), limits));
                spans.push(span(raw.get()));
            }
            Ok((Payload::Batch(results), spans))
        }
        _ => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Err(PayloadError::Shape),
            Err(e) => Err(PayloadError::Syntax(json_error(&e))),
        },
    }
}

mod file;

pub use file::{
    check_file_value, parse_any_notice, parse_any_payload, parse_any_payload_spans,
    parse_file_notice,
};

#[cfg(test)]
mod tests;
