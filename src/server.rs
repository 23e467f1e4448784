//! The thread-per-core engine.
//!
//! Receives the validated [`Config`] from `main` and emits running workers:
//! one OS thread per worker, pinned to a core, each with its own monoio
//! runtime (io_uring when the kernel allows it, epoll otherwise), its own
//! SO_REUSEPORT listener and its own upstream pool. After start-up the
//! workers share nothing but their read-only config and their own metrics
//! shard, so the request path takes no lock and crosses no thread.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::lifecycle::{accept_loop, Slot, Worker};
use crate::metrics::Metrics;

/// Set once by SIGTERM/SIGINT: workers stop accepting and drain.
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// Bumped by every successful SIGHUP reload; workers compare it with the
/// generation they run, once per request.
pub static CONFIG_GENERATION: AtomicU64 = AtomicU64::new(0);
/// The latest reloaded configuration. Locked only by a reload and by each
/// worker once after it, never in steady state.
static PUBLISHED: Mutex<Option<Arc<Config>>> = Mutex::new(None);

/// The configuration published by the latest reload, if any.
pub fn published_config() -> Option<Arc<Config>> {
    PUBLISHED.lock().ok().and_then(|c| c.clone())
}

fn publish(config: Config) {
    if let Ok(mut slot) = PUBLISHED.lock() {
        *slot = Some(Arc::new(config));
    }
    CONFIG_GENERATION.fetch_add(1, Ordering::Release);
}

/// Kernel accept backlog per listener; it holds bursts while workers are busy.
const BACKLOG: i32 = 4096;
/// io_uring submission queue entries per worker. Operations beyond it queue
/// in userspace, so this bounds batching, not concurrency; rings are charged
/// to the memlock limit on many systems, so small rings leave room for many
/// processes.
const URING_ENTRIES: u32 = 256;

/// Binds one SO_REUSEPORT listener per worker. Port 0 is resolved by the
/// first bind so every worker then shares the one real port.
pub fn bind_listeners(addr: SocketAddr, n: usize) -> anyhow::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut listeners = Vec::with_capacity(n);
    let mut actual = addr;
    for i in 0..n {
        let socket = Socket::new(Domain::for_address(actual), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&actual.into()).with_context(|| format!("cannot listen on {actual}"))?;
        socket.listen(BACKLOG)?;
        let l: std::net::TcpListener = socket.into();
        if i == 0 {
            actual = l.local_addr()?;
        }
        listeners.push(l);
    }
    Ok((listeners, actual))
}

/// Starts the workers and blocks for as long as they run.
/// SIGTERM or SIGINT begins a graceful shutdown: workers stop accepting,
/// requests and streams in flight get `shutdown_grace` to finish, and the
/// call returns (so the process exits 0).
///
/// SIGHUP reloads the configuration with `reload`: new requests use the new
/// one, requests in flight finish on the old one, pools of unchanged
/// providers are kept. An invalid new configuration is logged and ignored.
/// `listen` and `workers` cannot change without a restart.
pub fn run(config: Config, reload: &dyn Fn() -> anyhow::Result<Config>) -> anyhow::Result<()> {
    // Blocked before any worker starts, so that every thread inherits the
    // mask and the signals are only ever taken here, by sigwait.
    let signals = block_signals();
    let (listen, workers) = (config.listen, config.workers);
    let running = start(config)?;
    loop {
        match wait_signal(&signals) {
            libc::SIGHUP => match reload() {
                Ok(mut next) => {
                    if next.listen != listen && !(listen.port() == 0 || next.listen.port() == 0) {
                        tracing::warn!(old = %listen, new = %next.listen, "listen cannot change on reload; restart to apply");
                    }
                    if next.workers != workers {
                        tracing::warn!(
                            old = workers,
                            new = next.workers,
                            "workers cannot change on reload; restart to apply"
                        );
                    }
                    next.listen = running.addr;
                    next.workers = workers;
                    publish(next);
                    tracing::info!(generation = CONFIG_GENERATION.load(Ordering::Relaxed), "configuration reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "configuration reload rejected; keeping the current one")
                }
            },
            sig => {
                tracing::info!(signal = sig, "shutting down: no new connections, waiting for requests in flight");
                // Shut the listeners down before raising the flag: pending
                // accepts fail at once, queued and new connections are
                // refused, and no worker has closed (and so freed for reuse)
                // these fds yet, because they only drop their listener after
                // seeing the flag.
                for &fd in &running.listener_fds {
                    // SAFETY: shutdown(2) on a listening socket we own.
                    unsafe {
                        libc::shutdown(fd, libc::SHUT_RDWR);
                    }
                }
                SHUTDOWN.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    running.join()?;
    tracing::info!("shutdown complete");
    Ok(())
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a plain sigset_t value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

fn block_signals() -> libc::sigset_t {
    let set = signal_set();
    // SAFETY: changes this thread's mask only; threads spawned later inherit it.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    loop {
        // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
        if unsafe { libc::sigwait(set, &mut sig) } == 0 {
            return sig;
        }
    }
}

/// A started proxy: the address it really listens on (port 0 resolved) and
/// its worker threads.
pub struct Running {
    pub addr: SocketAddr,
    pub workers: Vec<std::thread::JoinHandle<()>>,
    /// The listening sockets, for waking the workers' accepts at shutdown.
    pub listener_fds: Vec<std::os::fd::RawFd>,
}

impl Running {
    /// Blocks for as long as the workers run.
    pub fn join(self) -> anyhow::Result<()> {
        for h in self.workers {
            if h.join().is_err() {
                anyhow::bail!("a worker thread panicked");
            }
        }
        Ok(())
    }
}

/// Binds, starts the workers and returns once every worker is accepting, so
/// that an embedder (tests, benches) learns the bound address.
pub fn start(config: Config) -> anyhow::Result<Running> {
    let workers = config.workers.max(1);
    let (listeners, addr) = bind_listeners(config.listen, workers)?;
    let mut config = config;
    config.listen = addr;
    let config = Arc::new(config);
    let metrics = Metrics::new(workers);
    let cores = core_affinity::get_core_ids().unwrap_or_default();

    // The count_tokens tokenizer is not loaded here: its tables cost tens of
    // MB of RSS, which a proxy whose clients never count tokens should not
    // pay. It loads once, lazily, on the first count_tokens request.

    let (ready_tx, ready_rx) = mpsc::channel::<Result<&'static str, String>>();
    let mut handles = Vec::with_capacity(workers);
    let listener_fds = listeners.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    for (id, listener) in listeners.into_iter().enumerate() {
        let core = if cores.is_empty() { None } else { Some(cores[id % cores.len()]) };
        let config = config.clone();
        let metrics = metrics.clone();
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new().name(format!("ccproxy-w{id}")).spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            worker_thread(id, listener, config, metrics, ready)
        })?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut driver = "unknown";
    for _ in 0..workers {
        match ready_rx.recv() {
            // Workers that fell back to epoll make a mixed set; say so.
            Ok(Ok(d)) => driver = if driver == "unknown" || driver == d { d } else { "mixed" },
            Ok(Err(e)) => anyhow::bail!("a worker failed to start: {e}"),
            Err(_) => anyhow::bail!("a worker exited during start-up"),
        }
    }
    let _ = metrics.driver.set(driver);
    tracing::info!(
        upstream = %config.providers[0].upstream.base_url,
        "ccproxy listening on http://{addr} workers={workers} driver={driver}"
    );
    Ok(Running { addr, workers: handles, listener_fds })
}

/// io_uring setup flags, tried from the most to the least a kernel may know.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RingFlags {
    None,
    Coop,
    CoopSingleIssuer,
}

fn worker_thread(
    id: usize,
    listener: std::net::TcpListener,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    ready: mpsc::Sender<Result<&'static str, String>>,
) {
    let uring = |flags: RingFlags| {
        let mut urb = io_uring::IoUring::builder();
        if flags >= RingFlags::Coop {
            // By default the kernel tells a thread that completions are
            // ready the way it delivers a signal, and every worker then
            // takes the process-wide signal lock: with two workers that lock
            // was the hottest spot of the whole proxy. Cooperative task
            // running defers that work to the thread's next kernel entry,
            // which the runtime makes on every turn anyway. (Linux 5.19+.)
            urb.setup_coop_taskrun();
        }
        if flags >= RingFlags::CoopSingleIssuer {
            // Only this thread ever submits to its ring, which lets the
            // kernel skip the locking it does for shared rings. (Linux 6.0+.)
            urb.setup_single_issuer();
        }
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .uring_builder(urb)
            .with_entries(URING_ENTRIES)
            .enable_timer()
            .build()
    };
    // Older kernels refuse setup flags they do not know: fewer flags, then none.
    let built =
        uring(RingFlags::CoopSingleIssuer).or_else(|_| uring(RingFlags::Coop)).or_else(|_| uring(RingFlags::None));
    let mut rt = match built {
        Ok(rt) => rt,
        // io_uring is available but its rings could not be allocated (the
        // memlock limit, usually): serve on epoll rather than not at all.
        Err(e) => match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build() {
            Ok(rt) => {
                tracing::warn!(worker = id, error = %e, "io_uring runtime failed; this worker uses epoll");
                rt.into()
            }
            Err(e2) => {
                let _ = ready.send(Err(format!("cannot build the runtime: {e} (epoll fallback: {e2})")));
                return;
            }
        },
    };
    let driver = match &rt {
        monoio::FusionRuntime::Uring(_) => "io_uring",
        monoio::FusionRuntime::Legacy(_) => "epoll",
    };
    rt.block_on(async move {
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot register the listener: {e}")));
                return;
            }
        };
        let slot = Rc::new(Slot::new(Worker::new(id, config, metrics)));
        let _ = ready.send(Ok(driver));
        drop(ready);
        accept_loop(slot, listener).await;
    });
}
