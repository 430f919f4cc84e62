//! Keeping a copy of the latest audit checkpoint outside the machine: a file, or an HTTP
//! endpoint that receives it by POST. A copy the attacker cannot reach is what exposes a
//! history rewritten with the audit key.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use keyscope_audit::Checkpoint;

/// Where a checkpoint copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file (replaced).
    File(std::path::PathBuf),
    /// `https://…`, by POST with a JSON body over TLS (the system's trusted roots).
    Https(String),
    /// `http://host[:port]/path`, by POST with a JSON body.
    Http {
        host: String,
        port: u16,
        path: String,
    },
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Target, String> {
        if let Some(rest) = text.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, "/"),
            };
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse::<u16>()
                        .map_err(|_| format!("invalid port in {text:?}"))?,
                ),
                None => (authority, 80),
            };
            let clean = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
            if !clean(host) || !clean(path) || host.contains('@') {
                return Err(format!("invalid URL {text:?}"));
            }
            return Ok(Target::Http {
                host: host.to_owned(),
                port,
                path: path.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("https://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if authority.is_empty()
                || authority.contains('@')
                || text.len() > 2048
                || !text.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!("invalid URL {text:?}"));
            }
            return Ok(Target::Https(text.to_owned()));
        }
        if text.is_empty() {
            return Err("empty checkpoint target".into());
        }
        Ok(Target::File(text.into()))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::File(path) => write!(f, "{}", path.display()),
            Target::Https(url) => write!(f, "{url}"),
            Target::Http { host, port, path } => write!(f, "http://{host}:{port}{path}"),
        }
    }
}

/// Sends or writes the checkpoint.
pub fn publish(target: &Target, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let body = format!("{}\n", serde_json::to_string(checkpoint)?);
    match target {
        Target::File(path) => {
            std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))
        }
        Target::Http { host, port, path } => post(host, *port, path, &body),
        Target::Https(url) => post_tls(url, body),
    }
}

/// How errors name an endpoint: scheme, host and port only. The path and query may carry a
/// collector's token, and errors reach logs.
fn endpoint_name(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", parsed.scheme()),
            (Some(host), None) => format!("{}://{host}", parsed.scheme()),
            _ => "(unparsable URL)".to_owned(),
        },
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

fn post_tls(url: &str, body: String) -> anyhow::Result<()> {
    let name = endpoint_name(url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("HTTP client")?;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("keyscope/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .send()
            .await
            .map_err(reqwest::Error::without_url)
            .with_context(|| format!("cannot reach the checkpoint endpoint {name}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("checkpoint endpoint {name} answered {}", status.as_u16());
        }
        Ok(())
    })
}

const TIMEOUT: Duration = Duration::from_secs(5);

fn post(host: &str, port: u16, path: &str, body: &str) -> anyhow::Result<()> {
    let address = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("no address for {host}"))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: keyscope/{}\r\n\r\n{body}",
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes())?;
    // Only the status line matters; read a bounded amount.
    let mut response = Vec::new();
    stream.take(4096).read_to_end(&mut response).ok();
    let status_line = response
        .split(|&b| b == b'\n')
        .next()
        .map(|line| String::from_utf8_lossy(line).trim().to_owned())
        .unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(code) => bail!("checkpoint endpoint http://{host}:{port} answered {code}"),
        None => bail!("checkpoint endpoint http://{host}:{port} gave no HTTP answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_endpoints_without_path_or_query() {
        assert_eq!(
            endpoint_name("https://collector.example:8443/ingest?token=s3cret"),
            "https://collector.example:8443"
        );
        assert_eq!(
            endpoint_name("https://collector.example/x/y"),
            "https://collector.example"
        );
        assert_eq!(endpoint_name("not a url"), "(unparsable URL)");
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            "http://collector.example:8080/audit/checkpoints".parse(),
            Ok(Target::Http {
                host: "collector.example".into(),
                port: 8080,
                path: "/audit/checkpoints".into()
            })
        );
        assert_eq!(
            "http://127.0.0.1".parse(),
            Ok(Target::Http {
                host: "127.0.0.1".into(),
                port: 80,
                path: "/".into()
            })
        );
        assert_eq!(
            "https://collector.example/cp".parse(),
            Ok(Target::Https("https://collector.example/cp".into()))
        );
        assert!("https://user@x/".parse::<Target>().is_err());
        assert!("https:///x".parse::<Target>().is_err());
        assert!("http://x:99999/".parse::<Target>().is_err());
        assert!("http://a b/".parse::<Target>().is_err());
        assert!("http://user@x/".parse::<Target>().is_err());
        assert_eq!("copy.json".parse(), Ok(Target::File("copy.json".into())));
    }
}
