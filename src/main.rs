//! The `ccproxy` binary: parses the command line, loads the config, sets up
//! logging and hands over to the engine. Receives argv and the environment;
//! emits a running proxy, or a precise error and a non-zero exit. With a
//! subcommand (`start`, `stop`, `status`, `code`) it hands over to the
//! [`ccproxy::launcher`] instead; without one the flags mean what they
//! always meant.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;

use ccproxy::config::{Cli, Config};
use ccproxy::launcher::{self, Command};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// The proxy flags, optionally followed by a launcher subcommand.
#[derive(Parser)]
#[command(name = "ccproxy", version, about = "Serves the Anthropic Messages API on top of OpenAI-compatible providers")]
struct Args {
    #[command(flatten)]
    cli: Cli,
    #[command(subcommand)]
    command: Option<Command>,
}

fn main() -> ExitCode {
    let Args { cli, command } = Args::parse();
    if let Some(command) = command {
        return launcher::run(command, &std::env::args_os().collect::<Vec<_>>());
    }
    init_logging(&cli.log_format);
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ccproxy: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        print!("{}", config.render_masked());
        return ExitCode::SUCCESS;
    }
    match ccproxy::server::run(config, &|| Config::load(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` sets levels (default `info`, which has one
/// access line per request and never message bodies or keys).
fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}
