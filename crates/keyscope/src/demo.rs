//! `keyscope demo storm-0558`: the 2023 attack replayed against a fresh Keyscope.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

/// Drills.
#[derive(Subcommand, Debug)]
pub enum DemoCommand {
    /// Replay the 2023 Storm-0558 attack against a fresh Keyscope in a temporary directory.
    /// Exit 0 only if every defence held.
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
    /// Print the steps and the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: DemoCommand) -> anyhow::Result<ExitCode> {
    match command {
        DemoCommand::Storm0558(_args) => bail!("the drill is not built yet"),
    }
}
