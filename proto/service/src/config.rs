//! Loading a layered configuration (defaults TOML, the user's file, environment variables,
//! merged by figment) into a raw configuration type, collecting every problem with its field
//! path instead of stopping at the first. The relay's and the agent's loaders both use it; what
//! the problems mean is theirs ([`shirase_proto::config`] holds the pure helpers).

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use shirase_proto::config::{
    DeProblem, FieldProblem, Renamed, deserialize_all, field_path, take_renamed,
};

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
