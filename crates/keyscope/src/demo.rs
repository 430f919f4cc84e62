//! `keyscope demo storm-0558`: the 2023 attack replayed against a fresh Keyscope.
//!
//! The drill runs the real program in a private temporary directory: `keyscope up` as a
//! child process, the admin commands as further children, the regular mail client and the
//! attacker over HTTP. It tells the story step by step and ends with a summary table; it
//! exits 0 only if every defence held (1 if one did not, 2 if the drill itself could not
//! run). `--naive` adds the contrast: the same forged token against a deliberately naive
//! validator ([`naive`], private to this module and never used by the service).

mod attack;
mod http;
mod naive;
mod output;
mod service;
mod storm;

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Drills.
#[derive(Subcommand, Debug)]
pub enum DemoCommand {
    /// Replay the 2023 Storm-0558 attack against a fresh Keyscope in a temporary directory.
    /// Exit 0 only if every defence held, 1 if one did not, 2 if the drill could not run.
    #[command(name = "storm-0558")]
    Storm0558(Storm0558Args),
}

/// `keyscope demo storm-0558`.
#[derive(Args, Debug)]
pub struct Storm0558Args {
    /// Also replay the forged token against a deliberately naive validator (signature checked
    /// against every key, issuer not bound to key), as the 2023 mail system did.
    #[arg(long)]
    pub naive: bool,
    /// Print the steps and the summary as JSON (the story goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory (store, master key, audit log, alerts, server log)
    /// instead of removing it at the end.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(command: DemoCommand) -> anyhow::Result<ExitCode> {
    match command {
        DemoCommand::Storm0558(args) => storm::run(&args),
    }
}
