//! provider-sim over real HTTP on 127.0.0.1:0: the token endpoint (client_secret_jwt verified
//! for real), the data endpoint's semantics and error codes, injected faults, the replica-lag
//! view, the admin endpoints, and notice emission to real JetStream and to a relay endpoint.

// Test helpers (not only #[test] fns) may unwrap: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use shirase_proto::{AtenaNo, ChangeKind, InterfaceId, Limits, parse_notice};
use shirase_tests::harness::NatsServer;
use shirase_tests::provider_sim::{
    ASSERTION_TYPE, ChangeSpec, ClockMode, Config, FaultsUpdate, NoticeTarget, Outcome,
    ProviderSim, SimHandle,
};
use tokio_util::sync::CancellationToken;

const CLIENT: &str = "tax";
const SECRET: &str = "dev-only-secret-for-tax";

struct Sim {
    h: SimHandle,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn i05() -> InterfaceId {
    "001o05-00".parse().unwrap()
}

fn i06() -> InterfaceId {
    "001o06-00".parse().unwrap()
}

fn base_config() -> Config {
    let mut c = Config::default().with_client(CLIENT, SECRET);
    c.population = 200;
    c
}

async fn start(config: Config) -> Sim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let h = ProviderSim::start(config, listener, shutdown.clone())
        .await
        .unwrap();
    Sim {
        h,
        shutdown,
        http: reqwest::Client::new(),
    }
}

fn now_s() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A client_secret_jwt assertion (RFC 7523) made the way a client would.
fn assertion(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn good_claims(sim: &Sim) -> Value {
    json!({
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": sim.h.token_url(),
        "iat": now_s(),
        "exp": now_s() + 120,
        "jti": uuid::Uuid::now_v7().to_string(),
    })
}

async fn token_request(sim: &Sim, assertion: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    let r = sim
        .http
        .post(sim.h.token_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn token(sim: &Sim) -> String {
    let (status, body) = token_request(sim, &assertion(SECRET, good_claims(sim))).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(sim: &Sim, token: &str, iface: &str, query: &[(&str, &str)]) -> reqwest::Response {
    sim.http
        .get(format!("{}/api/{iface}", sim.h.base_url()))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap()
}

async fn get_json(sim: &Sim, token: &str, iface: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let r = get(sim, token, iface, query).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn rows(body: &Value) -> &Vec<Value> {
    body["rows"].as_array().unwrap()
}

fn key(row: &Value) -> (String, u64) {
    (
        row["atena_no"].as_str().unwrap().to_owned(),
        row["history_no"].as_u64().unwrap(),
    )
}

fn assert_one_latest_per_addressee(rows: &[Value]) {
    let mut per: HashMap<&str, Vec<&Value>> = HashMap::new();
    for r in rows {
        per.entry(r["atena_no"].as_str().unwrap())
            .or_default()
            .push(r);
    }
    for (a, rs) in per {
        let latest: Vec<u64> = rs
            .iter()
            .filter(|r| r["latest"] == true)
            .map(|r| r["history_no"].as_u64().unwrap())
            .collect();
        assert!(
            latest.len() <= 1,
            "{a}: more than one latest row: {latest:?}"
        );
    }
}

#[tokio::test]
async fn token_is_issued_for_a_valid_assertion_and_opens_the_api() {
    let sim = start(base_config()).await;
    let (status, body) = token_request(&sim, &assertion(SECRET, good_claims(&sim))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let t = body["access_token"].as_str().unwrap();
    assert!(t.len() >= 32);
    let a = sim.h.atena_numbers()[0].to_string();
    let (status, body) = get_json(&sim, t, "001o05-00", &[("atena_no", &a)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["count"].as_u64().unwrap() >= 1);
    assert_eq!(sim.h.counters().token_issued, 1);
}

#[tokio::test]
async fn token_is_refused_for_each_kind_of_bad_assertion() {
    let sim = start(base_config()).await;
    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    cases.push((
        "bad signature",
        assertion("not-the-secret", good_claims(&sim)),
        "signature",
    ));
    let mut c = good_claims(&sim);
    c["aud"] = json!("http://elsewhere.example/oauth/token");
    cases.push(("wrong aud", assertion(SECRET, c), "aud"));
    let mut c = good_claims(&sim);
    c["exp"] = json!(now_s() - 120);
    c["iat"] = json!(now_s() - 240);
    cases.push(("expired", assertion(SECRET, c), "expired"));
    let mut c = good_claims(&sim);
    c["sub"] = json!("someone-else");
    cases.push(("iss != sub", assertion(SECRET, c), "sub"));
    let mut c = good_claims(&sim);
    c["iss"] = json!("stranger");
    c["sub"] = json!("stranger");
    cases.push(("unknown client", assertion(SECRET, c), "unknown client"));
    let mut c = good_claims(&sim);
    c["exp"] = json!(now_s() + 3600);
    cases.push(("exp too far ahead", assertion(SECRET, c), "5 minutes"));
    let mut c = good_claims(&sim);
    c.as_object_mut().unwrap().remove("jti");
    cases.push(("no jti", assertion(SECRET, c), "jti"));

    for (what, a, word) in &cases {
        let (status, body) = token_request(&sim, a).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "invalid_client", "{what}");
        let d = body["error_description"].as_str().unwrap();
        assert!(
            d.contains(word),
            "{what}: description {d:?} should mention {word:?}"
        );
    }

    // A reused jti: the first use succeeds, the replay is refused.
    let once = assertion(SECRET, good_claims(&sim));
    assert_eq!(token_request(&sim, &once).await.0, 200);
    let (status, body) = token_request(&sim, &once).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"].as_str().unwrap().contains("jti"),
        "{body}"
    );

    // Wrong grant type is a 400, not a 401.
    let form = [
        ("grant_type", "password"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", once.as_str()),
    ];
    let r = sim
        .http
        .post(sim.h.token_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    let c = sim.h.counters();
    assert_eq!(c.token_issued, 1);
    assert_eq!(c.token_refused, cases.len() as u64 + 2);
}

#[tokio::test]
async fn differential_get_returns_exactly_the_committed_rows_in_from_to() {
    let sim = start(base_config()).await;
    let t = token(&sim).await;
    let people = sim.h.atena_numbers();
    let mut changes = Vec::new();
    for (i, a) in people.iter().take(20).enumerate() {
        let kind = if i % 4 == 3 {
            ChangeKind::Retroactive
        } else {
            ChangeKind::Update
        };
        changes.extend(
            sim.h
                .commit_changes(ChangeSpec::new(1).interface(i05()).kind(kind).atena_no(*a))
                .unwrap(),
        );
    }
    // A change on the other interface must not show up.
    sim.h
        .commit_changes(
            ChangeSpec::new(1)
                .interface(i06())
                .kind(ChangeKind::Update)
                .atena_no(people[0]),
        )
        .unwrap();
    let from = changes[0].updated_at.clone();
    let to = changes[19].updated_at.clone();
    let (status, body) = get_json(
        &sim,
        &t,
        "001o05-00",
        &[("updated_from", &from), ("updated_to", &to)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["interface_id"], "001o05-00");
    let got = rows(&body);
    assert_eq!(body["count"].as_u64().unwrap() as usize, got.len());

    // Each change in [from, to) adds its new latest row and demotes the addressee's previous
    // newest row (which therefore carries the same DB update timestamp). FROM is inclusive,
    // TO exclusive: the 20th change is not there.
    let mut expected = BTreeMap::new();
    for c in &changes[..19] {
        expected.insert(
            (c.atena_no.to_string(), u64::from(c.history_no)),
            (true, c.updated_at.clone()),
        );
        expected.insert(
            (c.atena_no.to_string(), u64::from(c.history_no) - 1),
            (false, c.updated_at.clone()),
        );
    }
    let actual: BTreeMap<(String, u64), (bool, String)> = got
        .iter()
        .map(|r| {
            (
                key(r),
                (
                    r["latest"].as_bool().unwrap(),
                    r["updated_at"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(actual, expected);
    assert_one_latest_per_addressee(got);

    // Ordered by updated_at, then atena_no, then history_no.
    let order: Vec<(String, String, u64)> = got
        .iter()
        .map(|r| {
            (
                r["updated_at"].as_str().unwrap().to_owned(),
                key(r).0,
                key(r).1,
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);

    // Retroactive rows carry an earlier change date than the row they follow.
    for c in changes[..19]
        .iter()
        .filter(|c| c.kind == ChangeKind::Retroactive)
    {
        let new = got
            .iter()
            .find(|r| key(r) == (c.atena_no.to_string(), u64::from(c.history_no)))
            .unwrap();
        let prev = got
            .iter()
            .find(|r| key(r) == (c.atena_no.to_string(), u64::from(c.history_no) - 1))
            .unwrap();
        assert_eq!(new["change"], "retroactive");
        assert!(new["change_date"].as_str().unwrap() < prev["change_date"].as_str().unwrap());
    }

    // The timestamps are the documented shape: microseconds, +09:00.
    assert!(from.len() == 32 && from.ends_with("+09:00"), "{from}");
}

#[tokio::test]
async fn keyed_get_returns_every_history_row_of_the_addressees() {
    let sim = start(base_config()).await;
    let t = token(&sim).await;
    let people = sim.h.atena_numbers();
    let (a, b) = (people[3], people[7]);
    sim.h
        .commit_changes(
            ChangeSpec::new(2)
                .interface(i05())
                .kind(ChangeKind::Update)
                .atena_no(a),
        )
        .unwrap();
    let keys = format!("{a},{b}");
    let (status, body) = get_json(&sim, &t, "001o05-00", &[("atena_no", &keys)]).await;
    assert_eq!(status, 200, "{body}");
    let got = rows(&body);
    let db: Vec<(String, u64)> = sim
        .h
        .rows(&i05())
        .unwrap()
        .iter()
        .filter(|r| r.atena_no == a || r.atena_no == b)
        .map(|r| (r.atena_no.to_string(), u64::from(r.history_no)))
        .collect();
    let got_keys: BTreeSet<(String, u64)> = got.iter().map(key).collect();
    assert_eq!(got_keys, db.into_iter().collect::<BTreeSet<_>>());
    for who in [a, b] {
        let mut hs: Vec<u64> = got
            .iter()
            .filter(|r| r["atena_no"] == who.as_str())
            .map(|r| r["history_no"].as_u64().unwrap())
            .collect();
        hs.sort();
        assert_eq!(
            hs,
            (1..=hs.len() as u64).collect::<Vec<_>>(),
            "{who}: history numbers count up from 1"
        );
        let latest: Vec<&Value> = got
            .iter()
            .filter(|r| r["atena_no"] == who.as_str() && r["latest"] == true)
            .collect();
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0]["history_no"].as_u64(), hs.last().copied());
    }
    // Keys combine with the time window (AND).
    let newest = sim.h.changes().last().unwrap().updated_at.clone();
    let (status, body) = get_json(
        &sim,
        &t,
        "001o05-00",
        &[("atena_no", &keys), ("updated_from", &newest)],
    )
    .await;
    assert_eq!(status, 200);
    let got: BTreeSet<(String, u64)> = rows(&body).iter().map(key).collect();
    let h = sim.h.changes().last().unwrap().history_no as u64;
    assert_eq!(
        got,
        BTreeSet::from([(a.to_string(), h - 1), (a.to_string(), h)])
    );
}

#[tokio::test]
async fn malformed_parameters_get_e0001_naming_the_parameter() {
    let sim = start(base_config()).await;
    let t = token(&sim).await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("updated_from", "yesterday")], "updated_from"),
        (&[("updated_to", "2026-11-25T10:00:00")], "updated_to"),
        (&[("atena_no", "12345678901234")], "atena_no"),
        (&[("atena_no", "000000000100001,x")], "atena_no"),
        (&[("since", "2026-11-25T10:00:00+09:00")], "since"),
        (
            &[
                ("updated_from", "2026-11-25T10:00:00+09:00"),
                ("updated_to", "2026-11-25T09:00:00+09:00"),
            ],
            "updated_to",
        ),
    ];
    for (query, name) in cases {
        let (status, body) = get_json(&sim, &t, "001o05-00", query).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert_eq!(body["code"], "E0001", "{query:?}");
        assert!(
            body["message"].as_str().unwrap().starts_with(name),
            "{query:?}: {body}"
        );
    }
    // An interface this provider does not serve is malformed too.
    let (status, body) = get_json(&sim, &t, "010o01-00", &[("atena_no", "000000000100001")]).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("E0001")));
    assert_eq!(sim.h.counters().bad_request, 7);
}

#[tokio::test]
async fn too_many_rows_and_no_condition_get_e0004() {
    let mut c = base_config();
    c.population = 100;
    c.row_threshold = 50;
    let sim = start(c).await;
    let t = token(&sim).await;
    let future = "2099-01-01T00:00:00+09:00";
    let (status, body) = get_json(&sim, &t, "001o05-00", &[("updated_to", future)]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("E0004")),
        "{body}"
    );
    let (status, body) = get_json(&sim, &t, "001o05-00", &[]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("E0004")),
        "{body}"
    );
    // A narrow window under the threshold is fine.
    let changes = sim
        .h
        .commit_changes(
            ChangeSpec::new(10)
                .interface(i05())
                .kind(ChangeKind::Update),
        )
        .unwrap();
    let (status, body) = get_json(
        &sim,
        &t,
        "001o05-00",
        &[("updated_from", &changes[0].updated_at)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["count"].as_u64().unwrap() <= 20);
    assert_eq!(sim.h.counters().too_many, 2);
}

#[tokio::test]
async fn missing_unknown_and_expired_tokens_get_e0401() {
    let mut c = base_config();
    c.token_lifetime = Duration::from_secs(1);
    let sim = start(c).await;
    let q = [("atena_no", "000000000100001")];
    let r = sim
        .http
        .get(format!("{}/api/001o05-00", sim.h.base_url()))
        .query(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "E0401");
    let (status, body) = get_json(&sim, "not-a-token", "001o05-00", &q).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("E0401")));

    let t = token(&sim).await;
    assert_eq!(get(&sim, &t, "001o05-00", &q).await.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = get_json(&sim, &t, "001o05-00", &q).await;
        if status == 401 {
            assert_eq!(body["code"], "E0401");
            assert!(
                body["message"].as_str().unwrap().contains("expired"),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the 1 s token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // expire_tokens() revokes a fresh token at once.
    let t = token(&sim).await;
    sim.h.expire_tokens();
    assert_eq!(get(&sim, &t, "001o05-00", &q).await.status().as_u16(), 401);
}

#[tokio::test]
async fn latency_over_the_provider_timeout_is_a_bare_503_after_the_timeout() {
    let mut c = base_config();
    c.provider_timeout = Duration::from_millis(300);
    let sim = start(c).await;
    let t = token(&sim).await;
    let q = [("atena_no", "000000000100001")];

    sim.h
        .set_faults(FaultsUpdate {
            latency_ms: Some(100),
            ..Default::default()
        })
        .unwrap();
    let started = Instant::now();
    assert_eq!(get(&sim, &t, "001o05-00", &q).await.status().as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(100));

    sim.h
        .set_faults(FaultsUpdate {
            latency_ms: Some(5_000),
            ..Default::default()
        })
        .unwrap();
    let started = Instant::now();
    let r = get(&sim, &t, "001o05-00", &q).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("content-type").is_none());
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "a provider timeout has no body"
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let last = sim.h.requests().pop().unwrap();
    assert_eq!(
        (last.status, last.outcome, last.code),
        (503, Outcome::Timeout, None)
    );
    assert_eq!(sim.h.counters().timeout, 1);
}

#[tokio::test]
async fn error_rate_outage_and_maintenance_answer_503_with_their_codes() {
    let mut c = base_config();
    c.maintenance_retry_after = Duration::from_secs(7);
    let sim = start(c).await;
    let t = token(&sim).await;
    let q = [("atena_no", "000000000100001")];

    sim.h
        .set_faults(FaultsUpdate {
            error_rate: Some(1.0),
            ..Default::default()
        })
        .unwrap();
    for _ in 0..3 {
        let (status, body) = get_json(&sim, &t, "001o05-00", &q).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("E0503")),
            "{body}"
        );
    }
    sim.h
        .set_faults(FaultsUpdate {
            error_rate: Some(0.0),
            outage: Some(true),
            ..Default::default()
        })
        .unwrap();
    let (status, body) = get_json(&sim, &t, "001o05-00", &q).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("E0503")));

    let f = sim
        .h
        .set_faults(FaultsUpdate {
            outage: Some(false),
            maintenance: Some(true),
            ..Default::default()
        })
        .unwrap();
    assert!(f.maintenance && !f.outage && f.error_rate == 0.0);
    let r = get(&sim, &t, "001o05-00", &q).await;
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "E0900");
    // The token endpoint is down too.
    let (status, body) = token_request(&sim, &assertion(SECRET, good_claims(&sim))).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("E0900")));

    sim.h
        .set_faults(FaultsUpdate {
            maintenance: Some(false),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(get(&sim, &t, "001o05-00", &q).await.status().as_u16(), 200);
    let c = sim.h.counters();
    assert_eq!((c.error, c.maintenance, c.ok), (4, 2, 1));
}

#[tokio::test]
async fn replica_lag_hides_a_fresh_change_until_the_lag_passed() {
    let mut c = base_config();
    c.clock = ClockMode::Manual("2026-11-25T01:00:00Z".parse().unwrap());
    let sim = start(c).await;
    let t = token(&sim).await;
    let a: AtenaNo = sim.h.atena_numbers()[5];
    sim.h
        .set_faults(FaultsUpdate {
            replica_lag_ms: Some(5_000),
            ..Default::default()
        })
        .unwrap();
    sim.h.advance_clock(Duration::from_secs(10));
    let ch = sim
        .h
        .commit_changes(
            ChangeSpec::new(1)
                .interface(i05())
                .kind(ChangeKind::Update)
                .atena_no(a),
        )
        .unwrap();
    let ch = &ch[0];
    let keyed = [("atena_no", a.as_str())];
    let window = [("updated_from", ch.updated_at.as_str())];

    let (_, body) = get_json(&sim, &t, "001o05-00", &keyed).await;
    let got = rows(&body);
    assert!(
        got.iter()
            .all(|r| r["history_no"].as_u64().unwrap() < u64::from(ch.history_no))
    );
    let prev = got
        .iter()
        .find(|r| r["history_no"].as_u64() == Some(u64::from(ch.history_no) - 1))
        .unwrap();
    assert_eq!(
        prev["latest"], true,
        "the replica still shows the old newest row as latest"
    );
    let (_, body) = get_json(&sim, &t, "001o05-00", &window).await;
    assert_eq!(body["count"], 0);

    sim.h.advance_clock(Duration::from_millis(4_999));
    let (_, body) = get_json(&sim, &t, "001o05-00", &window).await;
    assert_eq!(body["count"], 0, "still inside the lag");

    sim.h.advance_clock(Duration::from_millis(1));
    let (_, body) = get_json(&sim, &t, "001o05-00", &window).await;
    let got: BTreeSet<(String, u64)> = rows(&body).iter().map(key).collect();
    let h = u64::from(ch.history_no);
    assert_eq!(
        got,
        BTreeSet::from([(a.to_string(), h - 1), (a.to_string(), h)])
    );
}

#[tokio::test]
async fn every_committed_change_is_published_to_jetstream_as_a_valid_notice() {
    let server = NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js
        .create_stream(stream::Config {
            name: shirase_proto::subject::NOTICE_STREAM.into(),
            subjects: vec!["shirase.notice.>".into(), "shirase.replay.>".into()],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(7200),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut c = base_config();
    c.notice_target = NoticeTarget::Nats { url: server.url() };
    let sim = start(c).await;
    let mut committed = sim.h.commit_changes(ChangeSpec::new(40)).unwrap();
    committed.extend(
        sim.h
            .commit_changes(
                ChangeSpec::new(10)
                    .interface(i06())
                    .kind(ChangeKind::Delete),
            )
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.info().await.unwrap().state.messages < 50 {
        assert!(
            Instant::now() < deadline,
            "only {} of 50 notices arrived",
            stream.info().await.unwrap().state.messages
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stream.info().await.unwrap().state.messages, 50);
    assert_eq!(sim.h.counters().notices_delivered, 50);

    let by_id: HashMap<String, _> = committed
        .iter()
        .map(|c| (c.notice_id.to_string(), c))
        .collect();
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for n in 1..=50 {
        let msg = stream.get_raw_message(n).await.unwrap();
        let notice = parse_notice(&msg.payload, &Limits::default())
            .unwrap_or_else(|v| panic!("invalid notice: {v:?}"));
        assert_eq!(msg.subject.as_str(), notice.subject());
        let c = by_id[&notice.id.to_string()];
        assert_eq!(notice.data.interface_id, c.interface_id);
        assert_eq!(notice.data.updated_at.as_str(), c.updated_at);
        assert_eq!(notice.data.change, c.kind);
        assert_eq!(
            notice.data.keys.as_ref().unwrap().atena_no,
            vec![c.atena_no]
        );
        assert_eq!(notice.sequence.0, c.sequence);
        assert_eq!(notice.source.to_string(), "urn:jp:lg:131016:001");
        assert_eq!(notice.data.interface_version.as_str(), "1.0");
        seqs.entry(notice.data.interface_id.to_string())
            .or_default()
            .push(notice.sequence.0);
    }
    for (iface, s) in &seqs {
        assert_eq!(
            *s,
            (1..=s.len() as u64).collect::<Vec<_>>(),
            "{iface}: consecutive sequences from 1, in order"
        );
    }
    assert_eq!(seqs.values().map(Vec::len).sum::<usize>(), 50);
}

/// A stand-in for the relay's `POST /v1/notices` (its documented batch answers) that refuses the
/// first batch with 503 and the first item of the second with a per-item 503 in a 207, so the
/// simulator's re-sends (same ids) are observable. Only the HTTP contract is imitated; the real
/// relay is tested against real JetStream in its own tests.
#[tokio::test]
async fn relay_target_gets_batches_and_503s_are_re_sent_with_the_same_ids() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // (Authorization header, notice ids) per request received.
    type Seen = Arc<Mutex<Vec<(String, Vec<String>)>>>;
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/v1/notices",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let seen = seen2.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let items: Vec<Value> = serde_json::from_slice(&body).unwrap();
                let ids: Vec<String> = items.iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect();
                let nth = {
                    let mut s = seen.lock().unwrap();
                    s.push((auth, ids.clone()));
                    s.len()
                };
                use axum::http::StatusCode as S;
                match nth {
                    1 => (S::SERVICE_UNAVAILABLE, [("retry-after", "0")], String::new()),
                    2 => {
                        let results: Vec<Value> = ids
                            .iter()
                            .enumerate()
                            .map(|(i, id)| json!({"index": i, "id": id, "status": if i == 0 { 503 } else { 202 }}))
                            .collect();
                        (S::MULTI_STATUS, [("retry-after", "0")], json!({"results": results}).to_string())
                    }
                    _ => (S::ACCEPTED, [("retry-after", "0")], "{}".to_owned()),
                }
            }
        }),
    );
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", relay.local_addr().unwrap());
    let stop = CancellationToken::new();
    let stop2 = stop.clone();
    tokio::spawn(async move {
        axum::serve(relay, app)
            .with_graceful_shutdown(stop2.cancelled_owned())
            .await
    });

    let mut c = base_config();
    c.notice_target = NoticeTarget::Relay {
        url: relay_url,
        token: "provider-001-token".into(),
    };
    let sim = start(c).await;
    let committed = sim
        .h
        .commit_changes(ChangeSpec::new(250).interface(i05()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.h.counters().notices_delivered < 250 {
        assert!(
            Instant::now() < deadline,
            "delivered {:?}",
            sim.h.counters()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|(auth, _)| auth == "Bearer provider-001-token")
    );
    assert!(
        seen.iter().all(|(_, ids)| ids.len() <= 100),
        "batches of at most 100"
    );
    assert_eq!(
        seen[1].1, seen[0].1,
        "the refused batch is re-sent with the same ids"
    );
    assert_eq!(
        seen[2].1,
        vec![seen[1].1[0].clone()],
        "only the item that got a 503 is re-sent"
    );
    let mut stored: Vec<String> = seen[1].1[1..].to_vec();
    stored.extend(seen[2..].iter().flat_map(|(_, ids)| ids.clone()));
    stored.sort();
    let mut want: Vec<String> = committed.iter().map(|c| c.notice_id.to_string()).collect();
    want.sort();
    assert_eq!(
        stored, want,
        "every notice stored exactly once after the re-sends"
    );
    let c = sim.h.counters();
    assert_eq!(
        (c.notices_delivered, c.notice_retries, c.notices_failed),
        (250, 2, 0)
    );
}

#[tokio::test]
async fn admin_endpoints_drive_faults_and_bursts_and_the_log_holds_counts_not_contents() {
    let sim = start(base_config()).await;
    let admin = |p: &str| format!("{}/admin/{p}", sim.h.base_url());
    let f: Value = sim
        .http
        .post(admin("faults"))
        .json(&json!({"latency_ms": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        f,
        json!({"error_rate": 0.0, "latency_ms": 5, "outage": false, "maintenance": false, "replica_lag_ms": 0, "row_threshold": 0, "timeout_above_rows": 0})
    );
    let f: Value = sim
        .http
        .post(admin("faults"))
        .json(&json!({"error_rate": 0.25}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (f["latency_ms"].as_u64(), f["error_rate"].as_f64()),
        (Some(5), Some(0.25)),
        "partial update"
    );
    let r = sim
        .http
        .post(admin("faults"))
        .json(&json!({"error_rate": 1.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("error_rate"));
    assert_eq!(
        sim.http
            .get(admin("faults"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["error_rate"],
        0.25
    );
    sim.http
        .post(admin("faults"))
        .json(&json!({"error_rate": 0.0, "latency_ms": 0}))
        .send()
        .await
        .unwrap();

    let burst: Vec<Value> = sim
        .http
        .post(admin("changes"))
        .json(&json!({"count": 5, "interface": "001o06-00", "kind": "update"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(burst.len(), 5);
    let listed: Vec<Value> = sim
        .http
        .get(admin("changes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, burst);
    assert_eq!(listed[4]["sequence"], 5);
    let r = sim
        .http
        .post(admin("changes"))
        .json(&json!({"count": 1, "interface": "009o01-00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let t = token(&sim).await;
    let a = burst[0]["atena_no"].as_str().unwrap().to_owned();
    let (status, body) = get_json(&sim, &t, "001o06-00", &[("atena_no", &a)]).await;
    assert_eq!(status, 200);
    let n = body["count"].as_u64().unwrap();
    let record = &rows(&body)[0]["record"];
    let name = record["shimei"].as_str().unwrap().to_owned();
    let kojin = record["kojin_no"].as_str().unwrap().to_owned();

    let log_text = sim
        .http
        .get(admin("requests"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let log: Vec<Value> = serde_json::from_str(&log_text).unwrap();
    let last = log.last().unwrap();
    assert_eq!(last["path"], "/api/001o06-00");
    assert_eq!(last["rows"].as_u64(), Some(n));
    assert_eq!(last["outcome"], "ok");
    for secret in [name.as_str(), kojin.as_str(), "架空町"] {
        assert!(
            !log_text.contains(secret),
            "the request log must not hold row contents"
        );
    }
    let counters: Value = sim
        .http
        .get(admin("counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["ok"], 1);
    assert_eq!(counters["rows_returned"].as_u64(), Some(n));
    assert_eq!(counters["changes_committed"], 5);
}

#[tokio::test]
async fn background_generator_commits_at_its_rate_with_notices() {
    let mut c = base_config();
    c.change_rate = 200.0;
    let sim = start(c).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.h.changes().len() < 50 {
        assert!(
            Instant::now() < deadline,
            "the generator committed only {}",
            sim.h.changes().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let changes = sim.h.changes();
    let notices = sim.h.notices();
    assert!(notices.len() >= changes.len());
    for (c, n) in changes.iter().zip(&notices) {
        assert_eq!(c.notice_id, n.id);
        assert_eq!(c.updated_at, n.data.updated_at.as_str());
    }
    // Strictly increasing DB timestamps across interfaces, commit after commit.
    assert!(
        changes
            .windows(2)
            .all(|w| w[0].updated_at < w[1].updated_at)
    );
    let kinds: BTreeSet<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
    assert!(kinds.contains("update"), "{kinds:?}");
    sim.h.shutdown();
    tokio::time::timeout(Duration::from_secs(5), sim.h.stopped())
        .await
        .expect("stops on shutdown");
    let after = sim.h.changes().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.h.changes().len(), after, "no commits after shutdown");
}

#[tokio::test]
async fn binary_prints_its_url_serves_and_exits_cleanly_on_sigterm() {
    use std::io::BufRead;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut child = std::process::Command::new(crate::fault_support::built_binary("provider-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--business",
            "010",
            "--population",
            "50",
            "--client",
            "delinquency=s3cret",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/admin/changes"))
        .json(&json!({"count": 3}))
        .send()
        .await
        .unwrap();
    let changes: Vec<Value> = r.json().await.unwrap();
    assert!(changes.iter().all(|c| c["interface_id"] == "010o01-00"));
    let counters: Value = http
        .get(format!("{url}/admin/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["changes_committed"], 3);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "provider-sim did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn lowered_row_threshold_and_heavy_request_timeouts_refuse_only_requests_over_them() {
    let mut c = base_config();
    c.provider_timeout = Duration::from_millis(200);
    let sim = start(c).await;
    let t = token(&sim).await;
    let a = sim.h.atena_numbers()[3];
    let keyed = [("atena_no", a.as_str())];
    let window = [("updated_from", "2000-01-01T00:00:00+09:00")];
    let (status, body) = get_json(&sim, &t, "001o05-00", &keyed).await;
    assert_eq!(status, 200, "{body}");
    let few = rows(&body).len();
    let (status, body) = get_json(&sim, &t, "001o05-00", &window).await;
    assert_eq!(status, 200, "{body}");
    let all = rows(&body).len();
    assert!(
        few >= 1 && all > few,
        "{few} rows of one addressee, {all} in all"
    );

    // An E0004 storm: the threshold drops to what one addressee has.
    let f = sim
        .h
        .set_faults(FaultsUpdate {
            row_threshold: Some(few),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(f.row_threshold, few);
    let (status, body) = get_json(&sim, &t, "001o05-00", &window).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("E0004")),
        "{body}"
    );
    assert_eq!(get_json(&sim, &t, "001o05-00", &keyed).await.0, 200);

    // Heavy requests time out instead: a bare 503 (no body) after the provider timeout.
    sim.h
        .set_faults(FaultsUpdate {
            row_threshold: Some(0),
            timeout_above_rows: Some(few),
            ..Default::default()
        })
        .unwrap();
    let started = std::time::Instant::now();
    let r = get(&sim, &t, "001o05-00", &window).await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.bytes().await.unwrap().len(), 0, "a bare 503 has no body");
    assert_eq!(get_json(&sim, &t, "001o05-00", &keyed).await.0, 200);

    sim.h
        .set_faults(FaultsUpdate {
            timeout_above_rows: Some(0),
            ..Default::default()
        })
        .unwrap();
    let (status, body) = get_json(&sim, &t, "001o05-00", &window).await;
    assert_eq!((status, rows(&body).len()), (200, all));
    let c = sim.h.counters();
    assert_eq!((c.too_many, c.timeout), (1, 1));
}
