//! The credentials committed to this repository for dev, tests and the demo (the tokens in
//! `deploy/dev/credentials`, the nkey seeds in `deploy/compose/dev-secrets`): public, so a
//! relay reachable from anywhere but its own host must not accept them. `serve` refuses to
//! start when the configuration names one and `http.listen` or `ops.listen` is not a loopback
//! address, unless `http.allow_dev_credentials = true` (a dev or demo setup in containers).
//! The lists are checked against the files by the `deploy_files` tests, so they cannot drift.

use crate::config::Config;

/// SHA-256 digests (hex) of the committed dev tokens: providers 001 and 010, the dev operator
/// and the dev viewer.
pub const DEV_TOKEN_SHA256: &[&str] = &[
    "37d956198d51a37c42642714e7b6d0833ed17b0aba8bf80ed9d032b0d2081e9a",
    "b6adbff4c8ae57c4e05a587f8936898ea429b1dd126d2839b7cc78f08914d0d4",
    "f1b37c6aa7991f792c3bf959e68e1bf02c59a88ea3ec80746861c7877ec56e36",
    "641650b800fce9eac90ccd1e1b6d73438d1456be6e0bd168296a4e5e61d951c5",
];

/// Public nkeys whose seeds are committed: relay, providers 001 and 010, subscribers tax and
/// delinquency.
pub const DEV_NKEYS: &[&str] = &[
    "UCZHDPYET7IXCY3NMM3KKXYPTRALTMXH4DCKABDF7D3LSBPIYRPCLDAF",
    "UCDNYMUKIPWDJOIRPW6I7KHRWQXHHY3SNTZXG44F2MXYLO3EOZZGTYXV",
    "UBP3V3JODLDCGSFTA2TWAW4SAGB4IOEG3BPGS73IVYHPGZI23S5BPVL2",
    "UCZFRHTY5NZPG2C2BFC55AAVHPHKFKM2BNZCUFNTHAGCHIRHS2WYLQVV",
    "UBFSVQ5QOXGD4PW36XJ63HBRPGOMVBQY52FXESRYWOPCVKA3CF7F32DP",
];

/// Every field of `config` holding a committed dev credential (field path, what it is).
pub fn found(config: &Config) -> Vec<(String, &'static str)> {
    let token = |h: &[u8; 32]| DEV_TOKEN_SHA256.contains(&hex::encode(h).as_str());
    let nkey = |k: &Option<String>| k.as_deref().is_some_and(|k| DEV_NKEYS.contains(&k));
    let mut out = Vec::new();
    if nkey(&config.relay_nkey) {
        out.push(("nats_auth.relay_nkey".to_owned(), "a dev nkey"));
    }
    for (i, p) in config.providers.iter().enumerate() {
        if p.token_hashes.iter().any(token) {
            out.push((format!("providers[{i}].credentials"), "a dev token"));
        }
        if nkey(&p.nats_nkey) {
            out.push((format!("providers[{i}].nats_nkey"), "a dev nkey"));
        }
    }
    for (i, s) in config.subscribers.iter().enumerate() {
        if nkey(&s.nats_nkey) {
            out.push((format!("subscribers[{i}].nats_nkey"), "a dev nkey"));
        }
    }
    for (i, o) in config.operators.iter().enumerate() {
        if o.token_hashes.iter().any(token) {
            out.push((format!("operators[{i}].credentials"), "a dev token"));
        }
    }
    out
}

/// Why `serve` must not start with `config`, if it must not: a committed dev credential while
/// listening beyond loopback.
pub fn refusal(config: &Config) -> Option<String> {
    if config.http.allow_dev_credentials {
        return None;
    }
    let listens = std::iter::once(("http.listen", config.http.listen))
        .chain(config.ops.listen.map(|a| ("ops.listen", a)));
    let (field, addr) = listens.into_iter().find(|(_, a)| !a.ip().is_loopback())?;
    let found = found(config);
    if found.is_empty() {
        return None;
    }
    let list: Vec<String> = found.iter().map(|(f, w)| format!("{f} ({w})")).collect();
    Some(format!(
        "{field} = {addr} is not a loopback address and the configuration holds credentials committed to the Shirase repository, which anyone can read: {}. Make your own (tokens: `openssl rand -hex 32`, then `printf %s \"$token\" | sha256sum`; nkeys: `nk -gen user -pubout`), or listen on 127.0.0.1, or set http.allow_dev_credentials = true for a dev or demo setup",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dev() -> Config {
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/dev/relay.toml");
        Config::load(Some(&file)).unwrap()
    }

    #[test]
    fn the_dev_configuration_is_refused_beyond_loopback_only() {
        let mut c = dev();
        // The compose topology's relay identity, whose seed is committed too.
        c.relay_nkey = Some(DEV_NKEYS[0].to_owned());
        assert_eq!(c.http.listen.ip().to_string(), "127.0.0.1");
        assert_eq!(refusal(&c), None, "loopback: allowed");
        let fields: Vec<String> = found(&c).into_iter().map(|(f, _)| f).collect();
        for want in [
            "nats_auth.relay_nkey",
            "providers[0].credentials",
            "providers[1].credentials",
            "operators[0].credentials",
            "operators[1].credentials",
        ] {
            assert!(fields.iter().any(|f| f == want), "{want} not in {fields:?}");
        }

        c.http.listen = "0.0.0.0:8080".parse().unwrap();
        let why = refusal(&c).unwrap();
        assert!(
            why.starts_with("http.listen = 0.0.0.0:8080 is not a loopback address"),
            "{why}"
        );
        assert!(
            why.contains("providers[0].credentials (a dev token)"),
            "{why}"
        );
        assert!(
            why.contains("operators[0].credentials (a dev token)"),
            "{why}"
        );

        c.http.allow_dev_credentials = true;
        assert_eq!(refusal(&c), None, "explicitly allowed");

        let mut c = dev();
        c.ops.listen = Some("10.0.0.5:9090".parse().unwrap());
        assert!(
            refusal(&c)
                .unwrap()
                .starts_with("ops.listen = 10.0.0.5:9090")
        );
    }

    #[test]
    fn own_credentials_are_not_refused_anywhere() {
        let mut c = dev();
        c.http.listen = "0.0.0.0:8080".parse().unwrap();
        c.relay_nkey = None;
        for p in &mut c.providers {
            p.token_hashes = vec![crate::config::token_digest("a-token-of-our-own-0123456789")];
            p.nats_nkey = None;
        }
        for s in &mut c.subscribers {
            s.nats_nkey = None;
        }
        c.operators.clear();
        assert_eq!(found(&c), vec![]);
        assert_eq!(refusal(&c), None);
    }
}
