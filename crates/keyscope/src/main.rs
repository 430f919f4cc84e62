//! `keyscope`: the command-line program. A thin layer over the library crates: it parses
//! arguments, reads files and stdin with size limits, and maps answers to exit codes.
//!
//! Exit codes (every command): 0 success / accepted; 1 a negative answer (token rejected,
//! signature invalid); 2 usage or input error (bad flags, unreadable or invalid key files);
//! 141 stdout was closed by its reader (as a shell reports SIGPIPE).

#![forbid(unsafe_code)]

mod audit;
mod bench;
mod bench_audit;
mod bench_http;
mod bootstrap;
mod checkpoint_copy;
mod config;
mod demo;
mod hunt;
mod identity;
mod incident;
mod input;
mod key;
mod live;
mod mail;
mod metrics;
mod token;
mod webmail;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keyscope: identity and mail that a stolen signing key cannot open.
#[derive(Parser)]
#[command(
    name = "keyscope",
    version,
    about = "Keyscope: identity and mail that a stolen signing key cannot open",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (identity endpoints for every realm, and the JMAP mail service) on one port.
    Up(identity::UpArgs),
    /// Enterprise tenants (realms).
    #[command(subcommand)]
    Tenant(identity::TenantCommand),
    /// Users of a realm.
    #[command(subcommand)]
    User(identity::UserCommand),
    /// Apps (OAuth clients) of a realm.
    #[command(subcommand)]
    App(identity::AppCommand),
    /// Validate and inspect tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Signature-level JWS operations (no claims policy), for interoperability testing.
    #[command(subcommand)]
    Jws(token::JwsCommand),
    /// Signing keys: the service's (list, rotate, revoke) and development key files.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Hunt through log files with the detection rules (Keyscope audit exports, Microsoft 365
    /// Unified Audit Log exports, Entra ID sign-in logs). Exit 0: no findings, 1: findings.
    Hunt(hunt::HuntArgs),
    /// Incident response: the blast radius of a key, tenant notices.
    #[command(subcommand)]
    Incident(incident::IncidentCommand),
    /// Mailboxes (the JMAP mail service's data).
    #[command(subcommand)]
    Mail(mail::MailCommand),
    /// The effective configuration (`config show`).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Drills: `demo storm-0558` replays the 2023 attack against a fresh Keyscope.
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Measure this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Exit code for a negative answer.
pub(crate) const EXIT_NEGATIVE: u8 = 1;
/// Exit code for a usage or input error.
pub(crate) const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => identity::run_up(args),
        Command::Tenant(command) => identity::run_tenant(command),
        Command::User(command) => identity::run_user(command),
        Command::App(command) => identity::run_app(command),
        Command::Token(command) => token::run_token(command),
        Command::Jws(command) => token::run_jws(command),
        Command::Key(command) => key::run(command),
        Command::Audit(command) => audit::run(command),
        Command::Mail(command) => mail::run(command),
        Command::Hunt(args) => hunt::run(args),
        Command::Incident(command) => incident::run(command),
        Command::Config(command) => config::run(command),
        Command::Demo(command) => demo::run(command),
        Command::Bench(command) => bench::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("keyscope: error: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
