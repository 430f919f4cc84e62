//! Configuration: `keyscope.toml`, `KEYSCOPE_*` variables and flags.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

/// `keyscope config …`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration of `keyscope up`, secrets masked.
    Show,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Show => bail!("not built yet"),
    }
}
