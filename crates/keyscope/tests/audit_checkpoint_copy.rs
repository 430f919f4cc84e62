#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `audit append --checkpoint-copy http://…` POSTs the latest checkpoint to a collector.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

fn data_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-cpcopy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Serves one request with `status`, returning what was received.
fn collector(status: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        // Read until the body announced by Content-Length has arrived.
        loop {
            let n = stream.read(&mut buffer).unwrap();
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        stream
            .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .unwrap();
        String::from_utf8(received).unwrap()
    });
    (port, handle)
}

fn append(dir: &std::path::Path, target: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["audit", "append", "--data-dir"])
        .arg(dir)
        .args(["--checkpoint-copy", target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments exits without reading stdin: the write may then
    // meet a closed pipe, which is not this test's concern (the exit status and stderr are).
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"Operation\":\"Send\"}\n{\"Operation\":\"SignIn\"}\n");
    child.wait_with_output().unwrap()
}

#[test]
fn the_checkpoint_is_posted_to_the_collector() {
    let dir = data_dir("ok");
    let (port, server) = collector("204 No Content");
    let output = append(&dir, &format!("http://127.0.0.1:{port}/checkpoints"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /checkpoints HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("Content-Type: application/json"));
    let body = request.split_once("\r\n\r\n").unwrap().1;
    let checkpoint: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(checkpoint["size"], 2);
    assert!(checkpoint["signature"].as_str().unwrap().len() > 80);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_collector_is_reported_after_the_events_are_durable() {
    let dir = data_dir("fail");
    let (port, server) = collector("500 Internal Server Error");
    let output = append(&dir, &format!("http://127.0.0.1:{port}/"));
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("500"), "{stderr}");
    // The events themselves were acknowledged before the copy was attempted.
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_https_collector_is_reported_after_the_events_are_durable() {
    let dir = data_dir("https");
    // A closed port: the TLS connection cannot be made.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = append(&dir, &format!("https://127.0.0.1:{port}/checkpoints"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the checkpoint endpoint"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    // A URL with credentials is refused before anything is read.
    let output = append(&dir, "https://user:pw@collector.example/");
    assert_eq!(output.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
