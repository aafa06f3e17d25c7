use clap::Parser;
use supernode::config::{Cli, LogFormat, Settings};
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

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::resolve(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("supernode: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(settings.config.server.log_format, settings.config.server.debug);
    let server = match supernode::start(settings).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    match server.wait().await {
        Ok(()) => {
            tracing::info!("supernode stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("server error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
