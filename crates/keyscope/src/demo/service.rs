//! The drill's own Keyscope: a private data directory, the real binary as `keyscope up` in a
//! child process, and the real admin commands as further child processes, all with an
//! environment the drill controls: none of the caller's `KEYSCOPE_*` settings (so the drill
//! can never touch a real deployment), hence a fresh master key that `keyscope up` creates in
//! the data directory, which keeps a `--keep` directory usable with `--data-dir`.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::http::Http;

/// A fresh directory only this user can enter, removed on drop unless kept.
pub(super) struct WorkDir {
    path: PathBuf,
    pub keep: bool,
}

impl WorkDir {
    pub fn create(keep: bool) -> anyhow::Result<WorkDir> {
        let base = std::env::temp_dir();
        for _ in 0..8 {
            let name = format!(
                "keyscope-demo-{}-{}",
                std::process::id(),
                hex(&random_bytes::<6>()?)
            );
            let path = base.join(name);
            // Not recursive: the directory must be new, so nobody prepared it for us.
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(WorkDir { path, keep }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create a directory in {}", base.display())
                    });
                }
            }
        }
        bail!("cannot find a free directory name in {}", base.display())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

pub(super) fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How to run the binary against the drill's data directory.
pub(super) struct Env {
    exe: PathBuf,
    /// The drill's directory: every child runs in it.
    work: PathBuf,
    pub data_dir: PathBuf,
}

/// What a child command printed.
#[derive(Debug)]
pub(super) struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    pub fn new(work: &Path) -> anyhow::Result<Env> {
        let exe = std::env::current_exe().context("cannot find the keyscope program itself")?;
        Ok(Env {
            exe,
            work: work.to_owned(),
            data_dir: work.join("data"),
        })
    }

    /// The binary with a clean environment: no `KEYSCOPE_*` or `RUST_LOG` of the caller (so
    /// the master key is the data directory's `master.key`), and the drill's directory as the
    /// working directory (so no configuration file of the caller's is picked up there either).
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.exe);
        command.current_dir(&self.work);
        for (name, _) in std::env::vars_os() {
            let inherited = name
                .to_str()
                .is_some_and(|n| n.starts_with("KEYSCOPE_") || n == "RUST_LOG");
            if inherited {
                command.env_remove(&name);
            }
        }
        command.stdin(Stdio::null());
        command
    }

    /// Runs `keyscope ARGS --data-dir D` (with `stdin` piped in, if given).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        let mut command = self.command();
        command
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run keyscope {}", args.join(" ")))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(text.as_bytes())
                .context("cannot write to a child's stdin")?;
        }
        let output = child
            .wait_with_output()
            .with_context(|| format!("keyscope {}", args.join(" ")))?;
        Ok(Output {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs a command that must succeed and print one JSON document.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let output = self.run(args, None)?;
        if output.code != Some(0) {
            bail!(
                "keyscope {} failed ({}): {}",
                args.join(" "),
                output
                    .code
                    .map_or_else(|| "killed".to_owned(), |c| format!("exit {c}")),
                output.stderr.trim()
            );
        }
        serde_json::from_str(output.stdout.trim()).with_context(|| {
            format!(
                "keyscope {} printed no JSON: {}",
                args.join(" "),
                output.stdout.trim()
            )
        })
    }
}

/// `keyscope up` as a child process; killed on drop unless stopped.
pub(super) struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: PathBuf,
}

/// Attempts at finding a free port (another process may take the one we saw free).
const START_ATTEMPTS: usize = 5;
/// How long a start may take before the drill gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Server {
    /// Starts `keyscope up` on a free loopback port with live detection writing to
    /// `alert_file` and its output going to `work/server.log`, and waits for `/healthz`.
    pub fn start(env: &Env, work: &Path, alert_file: &Path, http: &Http) -> anyhow::Result<Server> {
        let log = work.join("server.log");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("cannot find a free port on 127.0.0.1")?
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            // Owner-only, like everything in the directory: on a first start the server prints
            // the bootstrap operator's one-time password, and alerts name users and addresses.
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log)
                .with_context(|| format!("cannot open {}", log.display()))?;
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(alert_file)
                .with_context(|| format!("cannot create {}", alert_file.display()))?;
            let mut command = env.command();
            command
                .arg("up")
                .arg("--data-dir")
                .arg(&env.data_dir)
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--alert-file")
                .arg(alert_file)
                .stdout(file.try_clone().context("server log")?)
                .stderr(file);
            let child = command.spawn().context("cannot start keyscope up")?;
            let mut server = Server {
                child: Some(child),
                addr,
                log: log.clone(),
            };
            let started = Instant::now();
            loop {
                if let Some(status) = server.try_wait()? {
                    last_failure = format!("keyscope up exited ({status}): {}", server.log_tail());
                    break;
                }
                let url = format!("http://{addr}/healthz");
                if http.get(&url, None).is_ok_and(|r| r.status == 200) {
                    return Ok(server);
                }
                if started.elapsed() > START_TIMEOUT {
                    bail!(
                        "keyscope up did not become ready within {START_TIMEOUT:?}: {}",
                        server.log_tail()
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            // Only a port taken in the meantime is worth another try.
            if !last_failure.to_ascii_lowercase().contains("address") {
                break;
            }
        }
        bail!("{last_failure}")
    }

    fn try_wait(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match &mut self.child {
            Some(child) => child.try_wait().context("cannot watch keyscope up"),
            None => Ok(None),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The last lines of the server's output (for error messages).
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(15);
        lines.get(from..).unwrap_or_default().join("\n")
    }

    /// SIGTERM, then waits for a clean exit. Returns the exit code and how long it took.
    pub fn stop(&mut self) -> anyhow::Result<(Option<i32>, Duration)> {
        let Some(mut child) = self.child.take() else {
            bail!("the server was already stopped");
        };
        let started = Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("cannot send SIGTERM to keyscope up (pid {})", child.id());
        }
        loop {
            if let Some(status) = child.try_wait().context("waiting for keyscope up")? {
                return Ok((status.code(), started.elapsed()));
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("keyscope up did not stop within 30 s of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Set once the drill has been told to stop (SIGINT, SIGTERM).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the drill has been told to stop.
pub(super) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How long the drill may take to unwind after a signal before the watcher cleans up itself.
const UNWIND_GRACE: Duration = Duration::from_secs(15);

/// Watches for SIGINT and SIGTERM. On either, the server (its pid in `server_pid`, 0 when
/// none) is sent SIGTERM, so whatever the drill is waiting for fails at once and the drill
/// unwinds through its own guards (server stopped, directory removed unless kept) and exits
/// 130. Should it not manage within [`UNWIND_GRACE`], the watcher removes the directory and
/// exits itself.
pub(super) fn clean_up_on_signal(dir: PathBuf, keep: bool, server_pid: Arc<AtomicU32>) {
    // The handlers are installed here, before the drill starts anything, not lazily in the
    // watcher thread: a signal in the first milliseconds must not be lost.
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let handlers = {
        let _context = runtime.enter();
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::interrupt()).and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
    };
    let Ok((mut int, mut term)) = handlers else {
        return;
    };
    let watcher = move || {
        let signalled = runtime.block_on(async {
            tokio::select! {
                got = int.recv() => got.is_some(),
                got = term.recv() => got.is_some(),
            }
        });
        if !signalled {
            return;
        }
        INTERRUPTED.store(true, Ordering::SeqCst);
        let pid = server_pid.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(UNWIND_GRACE);
        if !keep {
            let _ = fs::remove_dir_all(&dir);
        }
        eprintln!("keyscope demo: interrupted");
        std::process::exit(130);
    };
    let _ = std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(watcher);
}

impl Drop for Server {
    fn drop(&mut self) {
        // Every path out of the drill, error or not, takes the child with it.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
