//! Every token rule of [`parse_subject`], and notice → subject → parts round trips.

use super::*;
use crate::notice::{ChangeKind, Notice, Sequence};

fn m(s: &str) -> MunicipalityCode {
    s.parse().unwrap()
}
fn b(s: &str) -> BusinessId {
    s.parse().unwrap()
}
fn i(s: &str) -> InterfaceId {
    s.parse().unwrap()
}
fn sub(s: &str) -> SubscriberId {
    s.parse().unwrap()
}

fn token_error(subject: &str, needle: &str) {
    match parse_subject(subject) {
        Err(SubjectError::Token {
            subject: s,
            message,
        }) => {
            assert_eq!(s, subject);
            assert!(
                message.contains(needle),
                "{subject}: {message:?} lacks {needle:?}"
            );
        }
        other => panic!("{subject}: {other:?}"),
    }
}

fn count_error(subject: &str, kind: &str, got: usize, want: usize) {
    assert_eq!(
        parse_subject(subject),
        Err(SubjectError::TokenCount {
            subject: subject.to_owned(),
            kind: match kind {
                "notice" => "notice",
                "replay" => "replay",
                "dlq" => "dlq",
                _ => "alert",
            },
            got,
            want
        }),
        "{subject}"
    );
}

#[test]
fn notice_subject_both_ways() {
    let s = notice_subject(&m("131016"), &b("001"), &i("001o05-00"));
    assert_eq!(s, "shirase.notice.131016.001.001o05-00");
    assert_eq!(
        parse_subject(&s),
        Ok(SubjectKind::Notice {
            municipality: m("131016"),
            provider: b("001"),
            interface: i("001o05-00")
        })
    );
}

#[test]
fn replay_and_dlq_subjects_both_ways() {
    let s = replay_subject(
        &sub("delinquency"),
        &m("011002"),
        &b("015"),
        &i("015o02-00"),
    );
    assert_eq!(s, "shirase.replay.delinquency.011002.015.015o02-00");
    assert_eq!(
        parse_subject(&s),
        Ok(SubjectKind::Replay {
            subscriber: sub("delinquency"),
            municipality: m("011002"),
            provider: b("015"),
            interface: i("015o02-00")
        })
    );
    let s = dlq_subject(&sub("tax-2"), &m("131016"), &b("010"), &i("010o01-00"));
    assert_eq!(s, "shirase.dlq.tax-2.131016.010.010o01-00");
    assert_eq!(
        parse_subject(&s),
        Ok(SubjectKind::Dlq {
            subscriber: sub("tax-2"),
            municipality: m("131016"),
            provider: b("010"),
            interface: i("010o01-00")
        })
    );
}

#[test]
fn alert_subjects_both_ways() {
    for sev in [Severity::Critical, Severity::Warning, Severity::Info] {
        let s = alert_subject(sev, "agent");
        assert_eq!(s, format!("shirase.alert.{}.agent", sev.as_str()));
        assert_eq!(
            parse_subject(&s),
            Ok(SubjectKind::Alert {
                severity: sev,
                component: "agent".to_owned(),
                subscriber: None,
            })
        );
        let s = agent_alert_subject(sev, &sub("tax"));
        assert_eq!(s, format!("shirase.alert.{}.agent.tax", sev.as_str()));
        assert_eq!(
            parse_subject(&s),
            Ok(SubjectKind::Alert {
                severity: sev,
                component: "agent".to_owned(),
                subscriber: Some(sub("tax")),
            })
        );
    }
    assert!(parse_subject(&format!("shirase.alert.info.{}", "a".repeat(32))).is_ok());
    assert!(parse_subject("shirase.alert.info.relay-2").is_ok());
    // Only the agent's alerts carry a fifth token, and it is a subscriber id.
    token_error("shirase.alert.info.agent.Tax", "subscriber id");
    assert!(matches!(
        parse_subject("shirase.alert.info.relay.tax"),
        Err(SubjectError::TokenCount {
            got: 5,
            want: 4,
            ..
        })
    ));
}

#[test]
fn inbox_prefixes_are_one_per_identity_and_never_overlap() {
    assert_eq!(relay_inbox_prefix(), "_INBOX_relay");
    assert_eq!(provider_inbox_prefix(&b("001")), "_INBOX_provider_001");
    assert_eq!(
        subscriber_inbox_prefix(&sub("tax")),
        "_INBOX_subscriber_tax"
    );
    // None is the client library's default `_INBOX`, whose replies every identity could read.
    for p in [
        relay_inbox_prefix(),
        provider_inbox_prefix(&b("001")),
        subscriber_inbox_prefix(&sub("tax")),
    ] {
        assert!(check_inbox_prefix(&p).is_ok(), "{p}");
        assert_ne!(p.split('.').next(), Some("_INBOX"));
    }
    for ok in ["_INBOX_x", "a.b-c.D_9"] {
        assert!(check_inbox_prefix(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "_INBOX.>",
        "_INBOX.*",
        "a..b",
        ".a",
        "a.",
        "a b",
        "a\"b",
        "a\nb",
        &"a".repeat(129),
    ] {
        let e = check_inbox_prefix(bad).unwrap_err();
        assert!(e.message.contains("inbox prefix"), "{bad:?}: {}", e.message);
    }
}

#[test]
fn unknown_prefixes() {
    for s in [
        "",
        "shirase",
        "nats.notice.131016.001.001o05-00",
        "shirase.notices.131016.001.001o05-00",
        "Shirase.notice.131016.001.001o05-00",
        "shirase.event.x",
    ] {
        assert_eq!(
            parse_subject(s),
            Err(SubjectError::UnknownPrefix(s.to_owned())),
            "{s:?}"
        );
    }
}

#[test]
fn wrong_token_counts() {
    count_error("shirase.notice.131016.001", "notice", 4, 5);
    count_error("shirase.notice.131016.001.001o05-00.x", "notice", 6, 5);
    count_error("shirase.notice.>", "notice", 3, 5);
    count_error("shirase.replay.delinquency.131016.001", "replay", 5, 6);
    count_error(
        "shirase.replay.delinquency.131016.001.001o05-00.x",
        "replay",
        7,
        6,
    );
    count_error("shirase.dlq.131016.001.001o05-00", "dlq", 5, 6);
    count_error("shirase.alert.info", "alert", 3, 4);
    count_error("shirase.alert.info.relay.x", "alert", 5, 4);
    count_error("shirase.alert.info.agent.tax.x", "alert", 6, 4);
    let e = parse_subject("shirase.alert.info").unwrap_err();
    assert_eq!(
        e.to_string(),
        "subject \"shirase.alert.info\" has 3 tokens, a alert subject has 4"
    );
}

#[test]
fn municipality_token() {
    token_error(
        "shirase.notice.131017.001.001o05-00",
        "JIS X 0402 check digit",
    );
    token_error("shirase.notice.13101.001.001o05-00", "6 digits");
    token_error("shirase.notice.*.001.001o05-00", "6 digits");
    token_error(
        "shirase.replay.delinquency.011001.001.001o05-00",
        "check digit",
    );
    token_error(
        "shirase.dlq.delinquency.011001.001.001o05-00",
        "check digit",
    );
}

#[test]
fn business_and_interface_tokens() {
    token_error("shirase.notice.131016.01.001o05-00", "business id");
    token_error("shirase.notice.131016.001.001o05", "interface id");
    token_error("shirase.notice.131016.001.*", "interface id");
    for s in [
        "shirase.notice.131016.010.001o05-00",
        "shirase.replay.delinquency.131016.010.001o05-00",
        "shirase.dlq.delinquency.131016.015.010o01-00",
    ] {
        assert_eq!(
            parse_subject(s),
            Err(SubjectError::ProviderMismatch(s.to_owned())),
            "{s}"
        );
    }
}

#[test]
fn subscriber_id_rules() {
    for good in ["a", "delinquency", "tax-2", "a0-b1", &"a".repeat(32)] {
        assert_eq!(good.parse::<SubscriberId>().unwrap().as_str(), good);
        assert!(
            parse_subject(&format!("shirase.replay.{good}.131016.001.001o05-00")).is_ok(),
            "{good}"
        );
    }
    for bad in [
        "",
        "2tax",
        "-tax",
        "Tax",
        "tax_2",
        "tax.2",
        "tax*",
        ">",
        &"a".repeat(33),
        "税",
    ] {
        let e = bad.parse::<SubscriberId>().unwrap_err();
        assert!(
            e.message
                .contains("subscriber id must be 1 to 32 characters"),
            "{bad}: {e}"
        );
    }
    token_error("shirase.replay.Tax.131016.001.001o05-00", "subscriber id");
    token_error("shirase.dlq.2tax.131016.001.001o05-00", "subscriber id");
    token_error("shirase.replay..131016.001.001o05-00", "subscriber id");
    // Serde goes through the same rule.
    assert!(serde_json::from_str::<SubscriberId>("\"Tax\"").is_err());
    assert_eq!(serde_json::to_string(&sub("tax")).unwrap(), "\"tax\"");
    assert_eq!(
        serde_json::from_str::<SubscriberId>("\"tax\"").unwrap(),
        sub("tax")
    );
}

#[test]
fn alert_severity_and_component() {
    token_error(
        "shirase.alert.error.agent",
        "severity must be critical, warning or info",
    );
    token_error("shirase.alert.Critical.agent", "severity");
    token_error(
        "shirase.alert.info.Agent",
        "component must be 1 to 32 characters",
    );
    token_error("shirase.alert.info.agent_1", "component");
    token_error(
        &format!("shirase.alert.info.{}", "a".repeat(33)),
        "component",
    );
    token_error("shirase.alert.info.", "component");
    assert_eq!(
        serde_json::to_string(&Severity::Warning).unwrap(),
        "\"warning\""
    );
}

#[test]
fn names_derived_from_ids() {
    assert_eq!(
        consumer_name(&sub("delinquency"), &b("015")),
        "delinquency_015"
    );
    assert_eq!(
        checkpoint_key(&sub("delinquency"), &m("131016"), &i("015o02-00")),
        "delinquency.131016.015o02-00"
    );
    assert!(format!("{NOTICE_PREFIX}.>").starts_with("shirase.notice"));
    assert_eq!(
        (NOTICE_STREAM, DLQ_STREAM, ALERT_STREAM),
        ("SHIRASE_NOTICES", "SHIRASE_DLQ", "SHIRASE_ALERTS")
    );
}

#[test]
fn notice_to_subject_to_parts() {
    for (muni, iface) in [
        ("131016", "001o05-00"),
        ("011002", "015o02-00"),
        ("271004", "010o01-11"),
    ] {
        let n = Notice::new(
            m(muni),
            i(iface),
            "1.0".parse().unwrap(),
            Sequence(1),
            "2026-11-25T10:15:30+09:00".parse().unwrap(),
            ChangeKind::Update,
            None,
        );
        match parse_subject(&n.subject()) {
            Ok(SubjectKind::Notice {
                municipality,
                provider,
                interface,
            }) => {
                assert_eq!(municipality, n.data.municipality_code);
                assert_eq!(provider, n.data.provider);
                assert_eq!(interface, n.data.interface_id);
                assert_eq!(interface, n.subject);
            }
            other => panic!("{other:?}"),
        }
        let r = replay_subject(
            &sub("ops"),
            &n.data.municipality_code,
            &n.data.provider,
            &n.data.interface_id,
        );
        assert!(
            matches!(parse_subject(&r), Ok(SubjectKind::Replay { interface, .. }) if interface == n.subject)
        );
    }
}
