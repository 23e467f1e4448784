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

/// Runs before Rust's runtime allocates anything (an ELF constructor, with
/// the earliest priority a program may use). mimalloc's arena is madvised
/// for transparent huge pages, so every 2 MiB region it touches would become
/// resident whole: that was 8 of 13 MB idle, and half the cost of each idle
/// connection. `MIMALLOC_ALLOW_THP=1` keeps them, as it would for mimalloc.
extern "C" fn no_huge_pages_before_main() {
    // SAFETY: PR_GET_THP_DISABLE takes no argument and touches no memory.
    let inherited = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    INHERITED_THP_DISABLED.store(inherited == 1, std::sync::atomic::Ordering::Relaxed);
    // getenv: the environment is set up before constructors run; no heap.
    // SAFETY: a NUL-terminated literal, and the result is only read.
    let v = unsafe { libc::getenv(c"MIMALLOC_ALLOW_THP".as_ptr()) };
    // SAFETY: a non-null getenv result is a NUL-terminated string.
    let keep = !v.is_null() && enabled_by_mimalloc(unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes());
    if !keep {
        set_thp_disabled(true);
    }
}

/// Whether the process had huge pages off before this binary touched the
/// setting (set by a parent or a container runtime), to hand on unchanged.
static INHERITED_THP_DISABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// mimalloc's own reading of a boolean option: empty, 1, true, yes or on.
fn enabled_by_mimalloc(v: &[u8]) -> bool {
    [&b""[..], b"1", b"true", b"yes", b"on"].iter().any(|w| v.eq_ignore_ascii_case(w))
}

#[used]
#[link_section = ".init_array.00101"]
static NO_HUGE_PAGES: extern "C" fn() = no_huge_pages_before_main;

fn main() -> ExitCode {
    let Args { cli, command } = Args::parse();
    if let Some(command) = command {
        // The launcher's children (claude, a shell) get the setting this
        // process was started with, not the server's.
        set_thp_disabled(INHERITED_THP_DISABLED.load(std::sync::atomic::Ordering::Relaxed));
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

/// Transparent huge pages for this process (inherited by its children).
fn set_thp_disabled(disabled: bool) {
    // SAFETY: PR_SET_THP_DISABLE takes one integer flag and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, libc::c_ulong::from(disabled), 0, 0, 0) };
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
