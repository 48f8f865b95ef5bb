//! Loading a layered configuration (defaults TOML, the user's file, environment variables,
//! merged by figment) into a raw configuration type, collecting every problem with its field
//! path instead of stopping at the first. The relay's and the agent's loaders both use it; what
//! the problems mean is theirs ([`shirase_proto::config`] holds the pure helpers).

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use shirase_proto::config::{
    ConfigError, ConfigErrorKind, DeProblem, FieldProblem, Problems, Renamed, deserialize_all,
    field_path, take_renamed,
};

/// Extract the raw configuration `R` from `fig` ([`extract`]) and validate it with `validate`,
/// collecting every problem of both steps: the configuration, or one error of `component`
/// (`"relay"`, `"agent"`) listing them all — a `Load` error when the file itself did not
/// read, else `Invalid`.
pub fn load_validated<R: DeserializeOwned, C>(
    fig: &Figment,
    defaults_toml: &str,
    renamed: &[Renamed],
    component: &'static str,
    validate: impl FnOnce(R, &mut Problems) -> Option<C>,
) -> Result<C, ConfigError> {
    let (raw, load_problems) = extract::<R>(fig, defaults_toml, renamed);
    let mut p = Problems::new();
    p.extend(load_problems.iter().cloned());
    let config = raw.and_then(|raw| validate(raw, &mut p));
    match config {
        Some(c) if p.is_empty() => Ok(c),
        _ => {
            let kind = if load_problems.is_empty() {
                ConfigErrorKind::Invalid
            } else {
                ConfigErrorKind::Load
            };
            Err(ConfigError::new(kind, component, p.into_vec()))
        }
    }
}

/// Deserialize the merged layers of `fig` into `T`: renamed keys (from `renamed`) are reported
/// and taken out, unknown keys and values of the wrong type are reported (the value at the same
/// path in `defaults_toml` stands in), and deserialization goes on so that every such problem is
/// found. `T` is `None` when it could not be built at all.
pub fn extract<T: DeserializeOwned>(
    fig: &Figment,
    defaults_toml: &str,
    renamed: &[Renamed],
) -> (Option<T>, Vec<FieldProblem>) {
    let mut tree: serde_json::Value = match fig.extract() {
        Ok(t) => t,
        // Unreadable TOML: figment names the file and the line.
        Err(e) => {
            let problems = e
                .into_iter()
                .map(|e| FieldProblem {
                    path: field_path(&e.path),
                    message: e.to_string(),
                })
                .collect();
            return (None, problems);
        }
    };
    let defaults: serde_json::Value = Figment::from(Toml::string(defaults_toml))
        .extract()
        .unwrap_or(serde_json::Value::Null);
    let mut problems = take_renamed(&mut tree, renamed);
    let (raw, more) = deserialize_all(tree, &defaults, |v| {
        Figment::from(Serialized::defaults(v))
            .extract::<T>()
            .map_err(de_problems)
    });
    problems.extend(more);
    (raw, problems)
}

fn de_problems(e: figment::Error) -> Vec<DeProblem> {
    e.into_iter()
        .map(|e| {
            let (unknown_key, missing_key) = match &e.kind {
                Kind::UnknownField(f, _) => (Some(f.clone()), None),
                Kind::MissingField(f) => (None, Some(f.to_string())),
                _ => (None, None),
            };
            DeProblem {
                path: e.path.clone(),
                unknown_key,
                missing_key,
                message: e.kind.to_string(),
            }
        })
        .collect()
}
