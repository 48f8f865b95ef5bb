//! The relay's and the agent's configuration loaders on untrusted TOML (an operator's file,
//! typed by hand): the raw layer, renamed keys, every problem collected with its field path.
//!
//! Invariants, beyond "no panic":
//! - a refused file has at least one problem, and no problem repeats itself;
//! - a problem's path names a field (`a.b[0].c`) or is empty for the file as a whole: no
//!   line breaks in paths, so an operator can grep for them;
//! - the same text gives the same answer twice (the loaders read nothing else: no base folder,
//!   no environment layer here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shirase_proto::config::ConfigError;

fn check(res: &Result<(), ConfigError>) {
    if let Err(e) = res {
        assert!(!e.problems.is_empty(), "an error without problems: {e}");
        for (i, p) in e.problems.iter().enumerate() {
            assert!(!p.path.contains('\n'), "path with a line break: {:?}", p.path);
            assert!(
                !e.problems[..i]
                    .iter()
                    .any(|q| q.path == p.path && q.message == p.message),
                "problem reported twice: {}: {}",
                p.path,
                p.message
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Credential and certificate paths are read while loading: keep the fuzzer away from
    // device files that never end.
    if ["/dev", "/proc", "/sys"].iter().any(|d| text.contains(d)) {
        return;
    }
    let relay = shirase_relay::Config::from_toml_str(text, None).map(|_| ());
    check(&relay);
    let again = shirase_relay::Config::from_toml_str(text, None).map(|_| ());
    assert_eq!(relay.is_ok(), again.is_ok());
    let agent = shirase_subscriber_kit::Config::from_toml_str(text).map(|_| ());
    check(&agent);
});
