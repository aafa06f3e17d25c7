use std::process::ExitCode;

use clap::Parser;
use supernode::config::default_print::default_config_text;
use supernode::config::{Cli, Command, ConfigAction, LogFormat, Settings};
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat, debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("SUPERNODE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// `version` and `config default`: print and exit.
fn run_command(command: &Command) -> ExitCode {
    match command {
        Command::Version => print!("{}", supernode::build_info::version_text("supernode")),
        Command::Config { action: ConfigAction::Default { format } } => match default_config_text(*format) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("supernode: writing the default configuration: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        return run_command(command);
    }
    let settings = match Settings::resolve(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("supernode: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(settings.config.server.log_format, settings.config.server.debug);
    if let Some(file) = &settings.file {
        tracing::info!(file = %file.display(), "configuration read");
    }
    for notice in &settings.notices {
        tracing::warn!("{notice}");
    }
    let server = match supernode::start(settings).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    match server.wait().await {
        Ok(()) => {
            tracing::info!("supernode stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("server error: {e}");
            ExitCode::from(1)
        }
    }
}
