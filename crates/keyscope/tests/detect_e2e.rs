#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Detection and response end to end, through the real binary: forged tokens against the
//! mail service raise the right alerts (in the audit log and the alert file), the key is
//! revoked, the incident report shows the blast radius, and the affected tenants get signed
//! notices (one by webhook with a retry, one in its administrator's mailbox).

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

/// The `WWW-Authenticate` of a refused JMAP session request.
fn refusal(server: &Server, token: &str) -> String {
    let response = server.get(
        "/.well-known/jmap",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(response.status, 401, "{}", response.text());
    response.header("www-authenticate").unwrap().to_owned()
}

/// The complete lines of the alert file (the server may be writing the next one).
fn alert_lines(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn has_alert(path: &Path, rule: &str) -> bool {
    alert_lines(path).iter().any(|a| a["rule_id"] == rule)
}

/// A webhook receiver: answers 503 to the first POST and 200 to the next, keeping bodies.
fn webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notices", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 65536];
            let body = loop {
                let read = stream.read(&mut buf).unwrap_or(0);
                if read == 0 {
                    break None;
                }
                raw.extend_from_slice(&buf[..read]);
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if raw.len() >= end + 4 + length {
                        break Some(
                            String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned(),
                        );
                    }
                }
            };
            let status = if n == 0 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            if n > 0
                && let Some(body) = body
            {
                kept.lock().unwrap().push(body);
            }
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, bodies)
}

fn jmap(server: &Server, token: &str, calls: Value) -> Value {
    let body = json!({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                      "methodCalls": calls});
    let response = request(
        server.addr,
        "POST",
        "/jmap/api",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

#[test]
fn forged_tokens_raise_alerts_then_revocation_report_and_notices_follow() {
    let dir = TempDir::new("detect");
    let logs = TempDir::new("detect-logs");
    let place = Place {
        data_dir: dir.join("data"),
        database_url: None,
        master_key: Some(random_master_key()),
    };
    let alerts = dir.join("alerts.jsonl");
    let (alert_url, alert_posts) = webhook();
    let server = Server::start(
        &place,
        "server",
        &["--alert-file", s(&alerts), "--alert-webhook", &alert_url],
        &logs,
    );
    place.ok(&["tenant", "create", "contoso"]);
    server.wait_for_tenant("contoso");
    let alice = place
        .ok(&["user", "add", "--tenant", "contoso", "alice", "--json"])
        .json();
    let carol = place
        .ok(&["user", "add", "--consumer", "carol", "--admin", "--json"])
        .json();
    assert_eq!(carol["admin"], true);

    // Ordinary traffic: Carol reads her mail with a genuine token.
    let carol_token = place
        .ok(&["token", "issue", "--consumer", "--user", "carol"])
        .stdout
        .trim()
        .to_owned();
    let listed = jmap(
        &server,
        &carol_token,
        json!([["Email/query", {"accountId": carol["mail_account"]}, "q"]]),
    );
    assert_eq!(listed["methodResponses"][0][0], "Email/query");

    let public = format!("http://{}", server.addr);
    let contoso_issuer = format!("{public}/t/contoso");
    let (consumer_kid, consumer_key) = stolen_key(&place, "consumers");
    let (_, contoso_key) = stolen_key(&place, "contoso");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |iss: &str| {
        json!({"iss": iss, "sub": alice["sub"], "aud": format!("{public}/jmap"),
               "exp": now + 600, "iat": now, "nbf": now,
               "jti": format!("forged-{}", random_master_key()),
               "client_id": "keyscope-mail", "tid": "contoso", "scope": "openid"})
    };

    // The 2023 forgery: the consumer key signs a token for the enterprise tenant.
    let storm = forge(consumer_key.as_ref(), &claims(&contoso_issuer));
    let refused = refusal(&server, &storm);
    assert!(refused.contains("key_issuer_mismatch"), "{refused}");
    // An enterprise key stolen too: correctly signed, never issued.
    let unissued = forge(contoso_key.as_ref(), &claims(&contoso_issuer));
    let refused = refusal(&server, &unissued);
    assert!(refused.contains("token_not_issued"), "{refused}");
    // Probing with keys nobody published, ten times from one address.
    for i in 0..10 {
        let mut header = Map::new();
        header.insert("typ".into(), json!("at+jwt"));
        header.insert("kid".into(), json!(format!("guess-{i}")));
        let parts: Vec<String> = [
            keyscope_jose::b64::encode_url(
                json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("guess-{i}")})
                    .to_string()
                    .as_bytes(),
            ),
            keyscope_jose::b64::encode_url(claims(&contoso_issuer).to_string().as_bytes()),
            keyscope_jose::b64::encode_url(&[7u8; 64]),
        ]
        .to_vec();
        assert!(refusal(&server, &parts.join(".")).contains("unknown_key"));
    }
    let attacked = Instant::now();
    let took = wait_until(Duration::from_secs(30), "the three alerts", || {
        [
            "ks-token-key-issuer-mismatch",
            "ks-token-not-issued",
            "ks-token-unknown-key-burst",
        ]
        .iter()
        .all(|rule| has_alert(&alerts, rule))
    });
    println!(
        "alerts raised {took:?} after the last attack request (checked {:?} later)",
        attacked.elapsed()
    );

    // Each alert is an Alert record whose trigger seqs point at the refusals.
    let records: Vec<Value> = audit_records(&place.data_dir)
        .into_iter()
        .map(Value::Object)
        .collect();
    let by_seq = |seq: u64| {
        records
            .iter()
            .find(|r| r["seq"].as_u64() == Some(seq))
            .unwrap()
    };
    for (rule, reason) in [
        ("ks-token-key-issuer-mismatch", "key_issuer_mismatch"),
        ("ks-token-not-issued", "token_not_issued"),
        ("ks-token-unknown-key-burst", "unknown_key"),
    ] {
        let alert = records
            .iter()
            .find(|r| r["Operation"] == "Alert" && r["AlertId"] == rule)
            .unwrap_or_else(|| panic!("no Alert record for {rule}"));
        let seqs = alert["TriggerSeqs"].as_array().unwrap();
        assert!(!seqs.is_empty(), "{alert:?}");
        for seq in seqs {
            let trigger = by_seq(seq.as_u64().unwrap());
            assert_eq!(trigger["Operation"], "TokenValidated", "{rule}");
            assert_eq!(trigger["Reason"], reason, "{rule}");
        }
    }
    let burst = records
        .iter()
        .find(|r| r["AlertId"] == "ks-token-unknown-key-burst")
        .unwrap();
    assert_eq!(burst["RecordCount"], 10);
    assert_eq!(burst["RuleId"], "ks-token-unknown-key-burst");
    assert_eq!(burst["Entities"]["ClientIPAddress"], "127.0.0.1");
    assert_eq!(burst["Severity"], "high");
    // De-duplicated: one alert per rule and entity, not one per attempt.
    assert_eq!(
        alert_lines(&alerts)
            .iter()
            .filter(|a| a["rule_id"] == "ks-token-key-issuer-mismatch")
            .count(),
        1
    );

    // The alert webhook got them too (its first POST was refused and retried).
    wait_until(Duration::from_secs(30), "alerts at the webhook", || {
        alert_posts.lock().unwrap().iter().any(|body| {
            serde_json::from_str::<Value>(body).unwrap()["rule_id"]
                == "ks-token-key-issuer-mismatch"
        })
    });

    // Response: revoke the consumer key. The forged token is now refused for that, and the
    // attempt raises ks-token-revoked-key.
    place.ok(&["key", "revoke", &consumer_kid, "--reason", "compromised"]);
    wait_until(Duration::from_secs(10), "the revocation", || {
        refusal(&server, &storm).contains("key_revoked")
    });
    wait_until(Duration::from_secs(30), "the revoked-key alert", || {
        has_alert(&alerts, "ks-token-revoked-key")
    });

    // The revocation's own record reaches the log through the outbox within a second.
    wait_until(Duration::from_secs(10), "the KeyRevoked record", || {
        audit_records(&place.data_dir)
            .iter()
            .any(|r| r.get("Operation").and_then(Value::as_str) == Some("KeyRevoked"))
    });

    // The report, and the notices: Contoso by webhook (the first POST fails), the consumer
    // realm (no webhook) in Carol's mailbox.
    let (url, bodies) = webhook();
    place.ok(&["tenant", "webhook", "contoso", &url]);
    let run = place.run(
        &[
            "incident",
            "report",
            "--kid",
            &consumer_kid,
            "--json",
            "--notify",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["kid"], consumer_kid.as_str());
    assert_eq!(report["key_realm"], "consumers");
    assert_eq!(report["tenants"], json!(["consumers", "contoso"]));
    let reasons = &report["refused_attempts"]["by_reason"];
    assert!(
        reasons["key_issuer_mismatch"].as_u64().unwrap() >= 1,
        "{reasons}"
    );
    assert!(reasons["key_revoked"].as_u64().unwrap() >= 1, "{reasons}");
    // Carol's genuine session is the only accepted use; the attacker read nothing.
    assert_eq!(report["tokens_accepted"]["count"], 1, "{report:#}");
    assert_eq!(report["tokens_accepted"]["groups"][0]["user"], carol["sub"]);
    let mail = report["mail_accessed"]["groups"].as_array().unwrap();
    assert!(mail.iter().all(|g| g["tenant"] == "consumers"), "{mail:?}");
    let lifecycle: Vec<&str> = report["key_lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Operation"].as_str().unwrap())
        .collect();
    assert!(lifecycle.contains(&"KeyRevoked"), "{lifecycle:?}");

    let notices = report["notices"].as_array().unwrap();
    let contoso = notices.iter().find(|n| n["tenant"] == "contoso").unwrap();
    assert_eq!(contoso["channel"], "webhook");
    assert_eq!(contoso["delivered"], true);
    assert!(
        contoso["detail"].as_str().unwrap().contains("attempt 2"),
        "{contoso}"
    );
    let consumers = notices.iter().find(|n| n["tenant"] == "consumers").unwrap();
    assert_eq!(consumers["channel"], "mailbox");
    assert_eq!(consumers["delivered"], true);

    // The webhook got Contoso's part only, signed with the audit key.
    let body: Value = serde_json::from_str(&bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(body["notice"]["tenant"], "contoso");
    assert_eq!(body["notice"]["report"]["tokens_accepted"]["count"], 0);
    assert_eq!(body["notice"]["report"]["mail_accessed"]["operations"], 0);
    let audit_key = keyscope_audit::audit_dir(&place.data_dir).join("audit-key.jwk");
    let verified = place
        .command()
        .args([
            "jws",
            "verify",
            "--jwks",
            s(&audit_key),
            body["jws"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
    let signed: Value = serde_json::from_slice(&verified.stdout).unwrap();
    let payload = signed["payload"]
        .as_str()
        .map_or_else(|| signed.to_string(), |p| p.to_owned());
    assert!(payload.contains("contoso"), "{signed}");
    // A tampered notice does not verify.
    let mut forged_notice = body["jws"].as_str().unwrap().to_owned();
    forged_notice.insert(forged_notice.find('.').unwrap() + 2, 'A');
    let refused = place
        .command()
        .args(["jws", "verify", "--jwks", s(&audit_key), &forged_notice])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));

    // Carol, the consumer realm's administrator, has the notice in her Inbox. (Her first
    // token died with the revoked key; the realm signs with a new one.)
    let carol_token = place
        .ok(&["token", "issue", "--consumer", "--user", "carol"])
        .stdout
        .trim()
        .to_owned();
    let found = jmap(
        &server,
        &carol_token,
        json!([
            ["Email/query", {"accountId": carol["mail_account"],
                             "filter": {"subject": "incident notice"}}, "q"],
            ["Email/get", {"accountId": carol["mail_account"], "properties": ["subject"],
                           "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}, "g"]
        ]),
    );
    let subjects = &found["methodResponses"][1][1]["list"];
    assert_eq!(
        subjects[0]["subject"], "Keyscope incident notice for tenant consumers",
        "{found}"
    );

    // Every notice delivery is itself audited (through the outbox), and the log verifies.
    wait_until(
        Duration::from_secs(10),
        "two TenantNotified records",
        || {
            audit_records(&place.data_dir)
                .iter()
                .filter(|r| {
                    r.get("AdminOperation").and_then(Value::as_str) == Some("TenantNotified")
                })
                .count()
                == 2
        },
    );
    assert_eq!(server.terminate(), 0);
    audit_verify(&place.data_dir);
}

/// A holder of a stolen key invents a new `sub` for every forged token: each is a new alert
/// entity, but one rule raises at most 50 alerts per window, then one "alert storm" alert.
#[test]
fn forged_tokens_with_invented_users_cannot_flood_the_alert_sinks() {
    let dir = TempDir::new("detect-storm");
    let logs = TempDir::new("detect-storm-logs");
    let place = Place {
        data_dir: dir.join("data"),
        database_url: None,
        master_key: Some(random_master_key()),
    };
    let alerts = dir.join("alerts.jsonl");
    let server = Server::start(&place, "server", &["--alert-file", s(&alerts)], &logs);
    place.ok(&["tenant", "create", "contoso"]);
    server.wait_for_tenant("contoso");
    let public = format!("http://{}", server.addr);
    let (_, consumer_key) = stolen_key(&place, "consumers");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for i in 0..70 {
        let claims = json!({"iss": format!("{public}/t/contoso"), "sub": format!("invented-{i}"),
            "aud": format!("{public}/jmap"), "exp": now + 600, "iat": now, "nbf": now,
            "jti": format!("forged-{i}"), "client_id": "keyscope-mail", "tid": "contoso"});
        let token = forge(consumer_key.as_ref(), &claims);
        assert!(refusal(&server, &token).contains("key_issuer_mismatch"));
    }
    wait_until(Duration::from_secs(30), "the storm alert", || {
        alert_lines(&alerts)
            .iter()
            .any(|a| a["title"].as_str().unwrap_or("").starts_with("Alert storm"))
    });
    // Let anything still in flight arrive before counting.
    std::thread::sleep(Duration::from_millis(500));
    let lines = alert_lines(&alerts);
    let of_rule: Vec<&Value> = lines
        .iter()
        .filter(|a| a["rule_id"] == "ks-token-key-issuer-mismatch")
        .collect();
    assert_eq!(of_rule.len(), 51, "{lines:#?}");
    let storms = of_rule
        .iter()
        .filter(|a| a["title"].as_str().unwrap().starts_with("Alert storm"))
        .count();
    assert_eq!(storms, 1);
    // Every refusal is still in the log.
    let refusals = audit_records(&place.data_dir)
        .iter()
        .filter(|r| r["Operation"] == "TokenValidated" && r["Reason"] == "key_issuer_mismatch")
        .count();
    assert_eq!(refusals, 70);
    assert_eq!(server.terminate(), 0);
}
