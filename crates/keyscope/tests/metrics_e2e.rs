#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `GET /metrics` end to end, through the real binary: refused tokens (by reason), a
//! client_credentials issuance and the alerts they raise move the counters; the audit
//! writer's latency and the consumer realm's key age are there; the whole text is a valid
//! exposition (checked line by line); a client that is not on the host is refused.

mod common;

use common::*;
use keyscope_metrics::text::{ParsedFamily, parse};
use serde_json::json;

/// The status of a JMAP session request with `token`.
fn jmap_status(server: &Server, token: &str) -> u16 {
    server
        .get(
            "/.well-known/jmap",
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .status
}

/// An independent line-by-line check of the exposition grammar (besides `parse`): each line
/// is `# HELP name text`, `# TYPE name kind` or `name[{labels}] value`; each family has one
/// HELP and one TYPE, before its samples.
fn check_lines(text: &str) {
    assert!(text.ends_with('\n'));
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut helped = std::collections::HashSet::new();
    let mut typed = std::collections::HashMap::new();
    for line in text.lines() {
        assert!(!line.is_empty() && !line.contains(['\r', '\t']), "{line:?}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(name_ok(name), "{line}");
            assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name_ok(name), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let end = line.find(['{', ' ']).unwrap();
            let name = &line[..end];
            assert!(name_ok(name), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|base| typed.get(*base).is_some_and(|k| k == "histogram"))
                .unwrap_or(name);
            assert!(typed.contains_key(family), "sample before its TYPE: {line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                keyscope_metrics::text::parse_value(value).is_some(),
                "value in {line}"
            );
            if let Some(labels) = line[end..].strip_prefix('{') {
                let close = labels.rfind("} ").unwrap();
                assert!(labels[..close].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
            }
        }
    }
}

/// Scrapes `/metrics` over loopback: 200, the 0.0.4 content type, a valid exposition.
fn scrape(server: &Server) -> (String, Vec<ParsedFamily>) {
    let response = server.get("/metrics", &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = response.text();
    check_lines(&text);
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, families)
}

/// The value of the sample `name` whose labels include `labels`.
fn value(families: &[ParsedFamily], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| s.name == name && labels.iter().all(|(l, v)| s.label(l) == Some(v)))
        .map(|s| s.value)
}

#[test]
fn metrics_count_decisions_requests_audit_latency_and_key_ages() {
    let dir = TempDir::new("metrics");
    let logs = TempDir::new("metrics-logs");
    let place = Place {
        data_dir: dir.join("data"),
        database_url: None,
        master_key: Some(random_master_key()),
    };
    let server = Server::start(&place, "server", &[], &logs);
    place.ok(&["tenant", "create", "contoso"]);
    server.wait_for_tenant("contoso");
    let alice = place
        .ok(&["user", "add", "--tenant", "contoso", "alice", "--json"])
        .json();

    // A confidential app gets a token by client_credentials.
    let daemon = place
        .ok(&[
            "app",
            "add",
            "--tenant",
            "contoso",
            "--name",
            "daemon",
            "--confidential",
            "--json",
        ])
        .json();
    let issued = server.post_form(
        "/t/contoso/token",
        &[(
            "Authorization",
            &basic(
                daemon["client_id"].as_str().unwrap(),
                daemon["client_secret"].as_str().unwrap(),
            ),
        )],
        "grant_type=client_credentials",
    );
    assert_eq!(issued.status, 200, "{}", issued.text());

    // Refused tokens: the consumer key signing for the tenant, and keys nobody published
    // (ten from one address: a burst the detection rules alert on).
    let public = format!("http://{}", server.addr);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": format!("{public}/t/contoso"), "sub": alice["sub"],
        "aud": format!("{public}/jmap"), "exp": now + 600, "iat": now, "nbf": now,
        "jti": format!("forged-{}", random_master_key()), "client_id": "keyscope-mail",
        "tid": "contoso", "scope": "openid"});
    let (_, consumer_key) = stolen_key(&place, "consumers");
    let forged = forge(consumer_key.as_ref(), &claims);
    assert_eq!(jmap_status(&server, &forged), 401);
    for i in 0..10 {
        let guess = [
            keyscope_jose::b64::encode_url(
                json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("guess-{i}")})
                    .to_string()
                    .as_bytes(),
            ),
            keyscope_jose::b64::encode_url(claims.to_string().as_bytes()),
            keyscope_jose::b64::encode_url(&[7u8; 64]),
        ]
        .join(".");
        assert_eq!(jmap_status(&server, &guess), 401);
    }
    // An unmatched path, counted under "unmatched" rather than its own name.
    assert_eq!(server.get("/no/such/path-1234", &[]).status, 404);

    // The counters are fed by the audit log's subscription: they catch up within moments;
    // the alerts follow live detection.
    let mut last = String::new();
    let took = wait_until(
        Duration::from_secs(30),
        "the counters and the alerts",
        || {
            let (text, families) = scrape(&server);
            last = text;
            let decided = |reason: &str| {
                value(
                    &families,
                    "keyscope_token_decisions_total",
                    &[("result", "Failure"), ("reason", reason)],
                )
            };
            decided("key_issuer_mismatch") == Some(1.0)
                && decided("unknown_key") == Some(10.0)
                && value(
                    &families,
                    "keyscope_alerts_total",
                    &[("rule", "ks-token-unknown-key-burst"), ("severity", "high")],
                )
                .is_some_and(|v| v >= 1.0)
                && value(
                    &families,
                    "keyscope_alerts_total",
                    &[("rule", "ks-token-key-issuer-mismatch")],
                )
                .is_some_and(|v| v >= 1.0)
        },
    );
    println!("counters caught up within {took:?}");
    let (text, families) = scrape(&server);
    println!("{text}");
    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&families, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{last}"))
    };

    // Issuance, by grant type.
    assert_eq!(
        get(
            "keyscope_tokens_issued_total",
            &[
                ("result", "Success"),
                ("grant_type", "client_credentials"),
                ("reason", "none")
            ]
        ),
        1.0
    );
    // Requests, by route template (never the raw path) and status.
    assert_eq!(
        get(
            "keyscope_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/t/{tenant}/token"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        get(
            "keyscope_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/.well-known/jmap"),
                ("status", "401")
            ]
        ),
        11.0
    );
    assert!(
        get(
            "keyscope_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    assert!(!text.contains("path-1234"), "a raw path became a label");
    assert!(
        get(
            "keyscope_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ) >= 1.0
    );
    assert!(
        get(
            "keyscope_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", "/t/{tenant}/token")]
        ) >= 1.0
    );
    // The audit writer: every record's latency, batches, the log's size.
    let latency_count = get("keyscope_audit_append_latency_seconds_count", &[]);
    assert!(latency_count > 0.0);
    assert!(
        get(
            "keyscope_audit_append_latency_seconds_bucket",
            &[("le", "+Inf")]
        ) == latency_count
    );
    assert!(get("keyscope_audit_batches_total", &[]) >= 1.0);
    assert!(get("keyscope_audit_fsyncs_total", &[]) >= get("keyscope_audit_batches_total", &[]));
    assert_eq!(get("keyscope_audit_write_failures_total", &[]), 0.0);
    assert!(get("keyscope_audit_committed_seq", &[]) >= 13.0);
    assert!(
        get(
            "keyscope_audit_records_total",
            &[("operation", "TokenValidated")]
        ) >= 11.0
    );
    // Key ages: the consumer realm's active key, and the realm's active-key age.
    assert!(
        get(
            "keyscope_signing_key_age_seconds",
            &[("realm", "consumers"), ("state", "active")]
        ) >= 0.0
    );
    assert!(
        get(
            "keyscope_realm_active_key_age_seconds",
            &[("realm", "consumers")]
        ) >= 0.0
    );
    assert!(
        get(
            "keyscope_realm_active_key_age_seconds",
            &[("realm", "contoso")]
        ) >= 0.0
    );
    assert!(get("keyscope_signing_keys", &[("state", "active")]) >= 2.0);
    assert_eq!(
        get(
            "keyscope_metrics_refused_total",
            &[("family", "keyscope_http_requests_total")]
        ),
        0.0
    );
    // No secret reaches the text.
    assert!(!text.contains(daemon["client_secret"].as_str().unwrap()));
    assert!(!text.contains(&forged));

    assert_eq!(server.terminate(), 0);
}

/// A local address that is not loopback (the one outgoing traffic would use), if any.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it only picks the route and source address.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn without_a_token_metrics_are_refused_to_clients_off_the_host() {
    let Some(ip) = non_loopback_address() else {
        println!("no non-loopback address on this host: nothing to check");
        return;
    };
    let dir = TempDir::new("metrics-remote");
    let logs = TempDir::new("metrics-remote-logs");
    let place = Place {
        data_dir: dir.join("data"),
        database_url: None,
        master_key: Some(random_master_key()),
    };
    let addr = SocketAddr::new(ip, free_port());
    let log = logs.join("server.log");
    let out = fs::File::create(&log).unwrap();
    let mut child = place
        .command()
        .arg("up")
        .args(place.args())
        .args(["--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let healthy = wait_until(
        Duration::from_secs(60),
        "the server on a host address",
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "exited: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            try_request(addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
        },
    );
    println!("healthy on {addr} after {healthy:?}");
    // The request comes from `ip`, not loopback: refused, with the way out named.
    let refused = request(addr, "GET", "/metrics", &[], b"");
    let bearer = request(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer guess")],
        b"",
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("metrics_token"),
        "{}",
        refused.text()
    );
    // Without a configured token, no token opens it either.
    assert_eq!(bearer.status, 403);
}

#[test]
fn with_a_token_every_scrape_must_present_it() {
    let dir = TempDir::new("metrics-token");
    let logs = TempDir::new("metrics-token-logs");
    let place = Place {
        data_dir: dir.join("data"),
        database_url: None,
        master_key: Some(random_master_key()),
    };
    let token = "prometheus-scrape-token-0123456789";
    let server = Server::start(&place, "server", &["--metrics-token", token], &logs);
    for refused in [None, Some("Bearer wrong-token-0123456789"), Some(token)] {
        let headers: Vec<(&str, &str)> =
            refused.map(|h| ("Authorization", h)).into_iter().collect();
        let response = server.get("/metrics", &headers);
        assert_eq!(response.status, 401, "{refused:?}: {}", response.text());
        assert!(!response.text().contains("keyscope_build_info"));
    }
    let good = format!("Bearer {token}");
    let response = server.get("/metrics", &[("Authorization", &good)]);
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    assert!(parse(&text).is_ok(), "{text}");
    for name in [
        "keyscope_build_info",
        "keyscope_detection_records_evaluated_total",
        "keyscope_alerts_suppressed_total",
    ] {
        assert!(text.contains(name), "no {name} in {text}");
    }
    // The token never appears in the server's output.
    assert_eq!(server.terminate(), 0);
    let output = fs::read_to_string(logs.join("server.log")).unwrap_or_default();
    assert!(!output.contains(token), "{output}");
}
