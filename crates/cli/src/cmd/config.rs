//! `keyscope config show`: the effective configuration and where each value came from.

use std::path::PathBuf;

use keyscope_scan::pipeline::ConfigSource;

use crate::exit::Exit;

/// Config commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the effective settings for a scan of PATH, with the origin of each value.
    Show {
        /// The path a scan would start from (the config is looked for here and upwards).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Read this config file instead of the nearest .keyscope.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Ignore config files.
        #[arg(long, conflicts_with = "config")]
        isolated: bool,
    },
}

/// Runs a config command.
pub fn run(command: Command) -> miette::Result<Exit> {
    match command {
        Command::Show {
            path,
            config,
            isolated,
        } => {
            let config = source(config, isolated).load(&path)?;
            // A key pasted into `exclude`, `disable_rules` or an environment is the user's
            // mistake to fix, not to print.
            crate::out::stdout(&crate::mask(config.show()))?;
            Ok(Exit::Clean)
        }
    }
}

/// Where the configuration of a scan comes from, as `--config` and `--isolated` say.
pub fn source(file: Option<PathBuf>, isolated: bool) -> ConfigSource {
    match file {
        _ if isolated => ConfigSource::Isolated,
        Some(file) => ConfigSource::File(file),
        None => ConfigSource::Discover,
    }
}
