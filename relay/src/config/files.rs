//! `[[file_watch]]`: the file watcher's folders on the municipality's file server (ファイル連携,
//! データ連携WT 1.1.3), one entry per provider folder, validated with errors that name the field.
//!
//! ```toml
//! [[file_watch]]
//! provider = "015"                 # business id of a [[providers]] entry
//! root = "/mnt/share/015"          # the provider's folder, as mounted on this host
//! completion = "marker"            # or "settle"
//! marker = "{name}.end"            # the completion marker next to a data file
//! settle = "30s"                   # unchanged this long: complete (settle rule, or data
//!                                  # written after its marker)
//! scan_interval = "5s"
//! [[file_watch.interfaces]]
//! id = "015o02-00"                 # an [[interfaces]] entry of this provider
//! dir = "015o02"                   # folder under root ("" = root itself)
//! pattern = "*.csv"                # data file names: * and ? wildcards
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shirase_proto::{BusinessId, InterfaceId, InterfaceVersion, SharePath};

use super::common::{Problems, rebase};
use super::providers::Provider;
use super::subscribers::Interface;

/// `[[file_watch]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileWatch {
    /// Business id of the provider whose folder this is.
    pub provider: String,
    /// The provider's folder on the mounted file server (relative to the config file).
    pub root: PathBuf,
    /// `marker` or `settle`.
    #[serde(default = "d_completion")]
    pub completion: String,
    /// Marker name pattern; `{name}` is the data file's name.
    #[serde(default = "d_marker")]
    pub marker: String,
    /// How long a file must stay unchanged to be complete without (or after) its marker.
    #[serde(default = "d_settle")]
    pub settle: String,
    /// How often the folder is listed.
    #[serde(default = "d_scan")]
    pub scan_interval: String,
    /// The interfaces exchanged through this folder.
    #[serde(default)]
    pub interfaces: Vec<RawFileInterface>,
}

/// `[[file_watch.interfaces]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileInterface {
    /// Interface id (連携ID).
    pub id: String,
    /// Interface version (版数) when the marker does not say; default: the one configured in
    /// `[[interfaces]]`.
    #[serde(default)]
    pub version: Option<String>,
    /// Folder under `root`, `/`-separated ("" = root).
    #[serde(default)]
    pub dir: String,
    /// Data file names (`*` any run of characters, `?` one character).
    #[serde(default = "d_pattern")]
    pub pattern: String,
}

fn d_completion() -> String {
    "marker".into()
}
fn d_marker() -> String {
    "{name}.end".into()
}
fn d_settle() -> String {
    "30s".into()
}
fn d_scan() -> String {
    "5s".into()
}
fn d_pattern() -> String {
    "*".into()
}

/// How a file is known to be complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// A marker file (`{name}` replaced by the data file's name) next to the data file.
    Marker(String),
    /// No marker: unchanged for the settle time.
    Settle,
}

impl Completion {
    /// The marker's name for a data file, when markers are used.
    pub fn marker_for(&self, name: &str) -> Option<String> {
        match self {
            Completion::Marker(p) => Some(p.replace("{name}", name)),
            Completion::Settle => None,
        }
    }
    /// Whether `name` is itself a marker (never announced as data).
    pub fn is_marker(&self, name: &str) -> bool {
        let Completion::Marker(p) = self else {
            return false;
        };
        let (pre, post) = p.split_once("{name}").unwrap_or((p.as_str(), ""));
        name.len() > pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
    }
}

/// One interface of a watched folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInterface {
    /// Interface id.
    pub id: InterfaceId,
    /// Version announced when the marker does not name one.
    pub version: InterfaceVersion,
    /// Folder under the root (`None` = the root).
    pub dir: Option<SharePath>,
    /// Data file name pattern.
    pub pattern: String,
}

/// A watched provider folder, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWatchConfig {
    /// The provider.
    pub provider: BusinessId,
    /// Its folder as mounted here.
    pub root: PathBuf,
    /// The completion rule.
    pub completion: Completion,
    /// Settle time.
    pub settle: Duration,
    /// Listing interval.
    pub scan_interval: Duration,
    /// Interfaces.
    pub interfaces: Vec<FileInterface>,
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Validate every `[[file_watch]]` entry.
pub(super) fn validate(
    raw: &[RawFileWatch],
    providers: &[Provider],
    interfaces: &[Interface],
    base_dir: Option<&Path>,
    p: &mut Problems,
) -> Vec<FileWatchConfig> {
    let mut out: Vec<FileWatchConfig> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("file_watch[{i}]");
        if let Some(c) = validate_one(r, &path, providers, interfaces, base_dir, p) {
            if out.iter().any(|o| o.provider == c.provider) {
                p.push(
                    format!("{path}.provider"),
                    format!("provider {} has two [[file_watch]] entries; give one entry several interfaces", c.provider),
                );
                continue;
            }
            out.push(c);
        }
    }
    out
}

fn validate_one(
    r: &RawFileWatch,
    path: &str,
    providers: &[Provider],
    interfaces: &[Interface],
    base_dir: Option<&Path>,
    p: &mut Problems,
) -> Option<FileWatchConfig> {
    let provider = p.parse::<BusinessId>(&format!("{path}.provider"), &r.provider);
    if let Some(b) = provider
        && !providers.iter().any(|x| x.business_id == b)
    {
        p.push(
            format!("{path}.provider"),
            format!("provider {b} is not in [[providers]]"),
        );
    }
    if r.root.as_os_str().is_empty() {
        p.push(
            format!("{path}.root"),
            "give the provider's folder on the mounted file server (e.g. /mnt/share/015)",
        );
    }
    let completion = match r.completion.as_str() {
        "marker" => {
            let m = &r.marker;
            if m.matches("{name}").count() != 1 || m.contains('/') || m == "{name}" {
                p.push(
                    format!("{path}.marker"),
                    "must contain {name} once, something besides it, and no '/' (e.g. \"{name}.end\")",
                );
            }
            Some(Completion::Marker(m.clone()))
        }
        "settle" => Some(Completion::Settle),
        other => {
            p.push(
                format!("{path}.completion"),
                format!("must be \"marker\" or \"settle\", got {other:?}"),
            );
            None
        }
    };
    let settle = p.duration(&format!("{path}.settle"), &r.settle);
    let scan_interval = p.duration(&format!("{path}.scan_interval"), &r.scan_interval);
    if let Some(d) = scan_interval
        && d < Duration::from_millis(100)
    {
        p.push(format!("{path}.scan_interval"), "must be at least 100ms");
    }
    if r.interfaces.is_empty() {
        p.push(
            format!("{path}.interfaces"),
            "list at least one [[file_watch.interfaces]] entry (id, dir, pattern)",
        );
    }
    let mut ifaces = Vec::new();
    for (j, ri) in r.interfaces.iter().enumerate() {
        let ipath = format!("{path}.interfaces[{j}]");
        if let Some(fi) = validate_interface(ri, &ipath, provider, interfaces, p) {
            ifaces.push(fi);
        }
    }
    Some(FileWatchConfig {
        provider: provider?,
        root: rebase(&r.root, base_dir),
        completion: completion?,
        settle: settle?,
        scan_interval: scan_interval?,
        interfaces: ifaces,
    })
}

fn validate_interface(
    ri: &RawFileInterface,
    ipath: &str,
    provider: Option<BusinessId>,
    interfaces: &[Interface],
    p: &mut Problems,
) -> Option<FileInterface> {
    let id = p.parse::<InterfaceId>(&format!("{ipath}.id"), &ri.id)?;
    if let Some(b) = provider
        && id.business_id() != b
    {
        p.push(
            format!("{ipath}.id"),
            format!(
                "interface {id} belongs to business id {}, not {b}",
                id.business_id()
            ),
        );
    }
    let configured: Vec<&Interface> = interfaces.iter().filter(|i| i.id == id).collect();
    let version = match &ri.version {
        Some(v) => {
            let v = p.parse::<InterfaceVersion>(&format!("{ipath}.version"), v)?;
            if !configured.iter().any(|i| i.version == v) {
                p.push(
                    format!("{ipath}.version"),
                    format!("interface {id} is not configured at version {v} in [[interfaces]]"),
                );
            }
            v
        }
        None => match configured.as_slice() {
            [one] => one.version.clone(),
            [] => {
                p.push(
                    format!("{ipath}.id"),
                    format!("interface {id} is not in [[interfaces]]"),
                );
                return None;
            }
            _ => {
                p.push(
                    format!("{ipath}.version"),
                    format!("interface {id} has several versions in [[interfaces]]: name the one its files follow"),
                );
                return None;
            }
        },
    };
    if ri.pattern.is_empty() || ri.pattern.contains('/') {
        p.push(
            format!("{ipath}.pattern"),
            "give a file name pattern without '/' (e.g. \"*.csv\")",
        );
    }
    let dir = if ri.dir.is_empty() {
        None
    } else {
        Some(p.parse::<SharePath>(&format!("{ipath}.dir"), &ri.dir)?)
    };
    Some(FileInterface {
        id,
        version,
        dir,
        pattern: ri.pattern.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names() {
        assert!(glob_match("*.csv", "tainou-20261125.csv"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("*.csv", "x.csv.end"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("滞納*.csv", "滞納1.csv"));
    }

    const TOPOLOGY: &str = r#"
municipality_code = "131016"
[[providers]]
business_id = "015"
name = "tax collection"
pull_api_base_url = "http://127.0.0.1:9000"
credentials = { token_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"] }
[[interfaces]]
id = "015o02-00"
version = "1.0"
provider = "015"
"#;

    #[test]
    fn a_valid_folder_loads_with_defaults() {
        let text = format!(
            "{TOPOLOGY}\n[[file_watch]]\nprovider = \"015\"\nroot = \"share\"\n[[file_watch.interfaces]]\nid = \"015o02-00\"\ndir = \"015o02\"\npattern = \"*.csv\"\n"
        );
        let c =
            crate::config::Config::from_toml_str(&text, Some(Path::new("/etc/shirase"))).unwrap();
        let fw = &c.file_watch[0];
        assert_eq!(fw.root, PathBuf::from("/etc/shirase/share"));
        assert_eq!(fw.completion, Completion::Marker("{name}.end".into()));
        assert_eq!(fw.settle, Duration::from_secs(30));
        assert_eq!(fw.scan_interval, Duration::from_secs(5));
        assert_eq!(fw.interfaces[0].version.as_str(), "1.0");
        assert_eq!(fw.interfaces[0].dir.as_ref().unwrap().as_str(), "015o02");
    }

    #[test]
    fn every_problem_names_its_field() {
        let text = format!(
            "{TOPOLOGY}\n[[file_watch]]\nprovider = \"016\"\nroot = \"\"\ncompletion = \"mtime\"\nmarker = \"end\"\nsettle = \"soon\"\nscan_interval = \"10ms\"\n[[file_watch.interfaces]]\nid = \"001o05-00\"\ndir = \"../x\"\npattern = \"a/b\"\n"
        );
        let e = crate::config::Config::from_toml_str(&text, None).unwrap_err();
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "file_watch[0].provider",
            "file_watch[0].root",
            "file_watch[0].completion",
            "file_watch[0].settle",
            "file_watch[0].scan_interval",
            "file_watch[0].interfaces[0].id",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        let text = format!(
            "{TOPOLOGY}\n[[file_watch]]\nprovider = \"015\"\nroot = \"s\"\nmarker = \"end\"\n[[file_watch.interfaces]]\nid = \"015o02-00\"\ndir = \"../x\"\npattern = \"a/b\"\n"
        );
        let e = crate::config::Config::from_toml_str(&text, None).unwrap_err();
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "file_watch[0].marker",
                "file_watch[0].interfaces[0].pattern",
                "file_watch[0].interfaces[0].dir"
            ],
            "{e}"
        );
    }

    #[test]
    fn markers_are_recognized_by_their_pattern() {
        let c = Completion::Marker("{name}.end".into());
        assert_eq!(c.marker_for("a.csv").as_deref(), Some("a.csv.end"));
        assert!(c.is_marker("a.csv.end"));
        assert!(!c.is_marker("a.csv"));
        assert!(!c.is_marker(".end"));
        let c = Completion::Marker("done_{name}".into());
        assert!(c.is_marker("done_a.csv"));
        assert!(!Completion::Settle.is_marker("a.end"));
    }
}
