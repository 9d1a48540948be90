//! The one HTTP serving stack behind every listener hoist opens
//! (`--webhook-addr`, `--metrics-addr`): hyper's HTTP/1, with limits that
//! keep a flood of idle or slow connections from starving real requests or
//! taking the file descriptors that scans and git need.
//!
//! - A process-wide cap on connections served at once, a quarter of the
//!   open-file limit (at most [`MAX_TOTAL`]), shared by all listeners.
//! - A per-peer-IP cap ([`PER_PEER`]).
//! - At either cap, the oldest connection that has sent nothing (then the
//!   oldest with a request head still incomplete) is closed to make room;
//!   a connection in the middle of a request never is. Only when every
//!   connection is busy is the new one closed, at once, before anything is
//!   allocated for it. Refusing the newcomer instead would let one peer's
//!   idle sockets starve that peer's real requests, and behind an Ingress
//!   every request comes from one peer.
//! - A short deadline for a connection that has sent nothing, hyper's
//!   header-read timeout for a head sent slowly, an idle deadline between
//!   keep-alive requests, and a lifetime for the whole connection.
//! - Running out of file descriptors on accept backs off briefly instead
//!   of spinning or ending the server.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Connections one peer IP may hold at once.
pub const PER_PEER: usize = 64;
/// The most connections served at once, whatever the open-file limit.
pub const MAX_TOTAL: usize = 4096;
/// The fewest, however low the open-file limit.
const MIN_TOTAL: usize = 64;

/// How long a connection may stay open having sent nothing.
pub const SILENT: Duration = Duration::from_secs(2);
/// How long a client has to send a request head once it has started.
pub const HEAD: Duration = Duration::from_secs(5);
/// How long a keep-alive connection may wait for its next request.
pub const IDLE: Duration = Duration::from_secs(5);
/// The largest request head read (hyper's read buffer).
const MAX_HEAD: usize = 16 * 1024;

/// Raises the soft open-file limit to the hard one, as Go's runtime does,
/// so that connections, registry clients and git share the most the system
/// allows. Returns the soft limit in force afterwards.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = rustix::process::Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("raising the open-file limit from {current} to {maximum}: {e}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The caps connections are admitted under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_peer: usize,
    pub total: usize,
}

impl Limits {
    /// A quarter of `open_files` in all: the rest stays for scans, git and
    /// the API server.
    pub fn for_open_files(open_files: u64) -> Limits {
        let quarter = usize::try_from(open_files / 4).unwrap_or(MAX_TOTAL);
        let total = quarter.clamp(MIN_TOTAL, MAX_TOTAL);
        Limits {
            per_peer: PER_PEER.min(total),
            total,
        }
    }
}

/// Where a connection is; only `SILENT_` and `PARTIAL` ones may be closed
/// to make room.
const FRESH: u8 = 0;
const SILENT_: u8 = 1;
const PARTIAL: u8 = 2;
const BUSY: u8 = 3;

/// One admitted connection, as the gate and its task both see it.
struct Slot {
    peer: IpAddr,
    state: AtomicU8,
    /// Milliseconds after the gate's start when it last finished a request
    /// (or was accepted); the silent and idle deadlines count from there.
    quiet_since: AtomicU64,
    requests: AtomicU64,
    evict: Notify,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// Every admitted connection by admission order: the first is oldest.
    all: BTreeMap<u64, Arc<Slot>>,
    by_peer: HashMap<IpAddr, BTreeMap<u64, Arc<Slot>>>,
}

impl Table {
    /// The oldest connection in `slots` that may be closed: silent first,
    /// then with a head still incomplete.
    fn victim<'a>(slots: impl Iterator<Item = (&'a u64, &'a Arc<Slot>)>) -> Option<u64> {
        let mut partial = None;
        for (id, slot) in slots {
            match slot.state.load(Ordering::Acquire) {
                SILENT_ => return Some(*id),
                PARTIAL if partial.is_none() => partial = Some(*id),
                _ => {}
            }
        }
        partial
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let slot = self.all.remove(&id)?;
        if let Some(peer) = self.by_peer.get_mut(&slot.peer) {
            peer.remove(&id);
            if peer.is_empty() {
                self.by_peer.remove(&slot.peer);
            }
        }
        Some(slot)
    }
}

/// Admits connections under [`Limits`]; one per process, shared by every
/// listener (see [`Gate::process`]).
pub struct Gate {
    limits: Limits,
    started: Instant,
    table: Mutex<Table>,
}

/// Why a connection was not admitted, or what made room for it.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// An idle connection was closed to make room.
    Evicted,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            started: Instant::now(),
            table: Mutex::default(),
        }
    }

    /// The process's gate, sized by the open-file limit when first used
    /// (after `main` raised it).
    pub fn process() -> Arc<Gate> {
        static GATE: OnceLock<Arc<Gate>> = OnceLock::new();
        Arc::clone(GATE.get_or_init(|| {
            let open_files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(u64::MAX);
            let limits = Limits::for_open_files(open_files);
            tracing::debug!(?limits, open_files, "connection limits");
            Arc::new(Gate::new(limits))
        }))
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A ticket for a new connection from `peer`, or None when every
    /// connection that counts against a full cap is busy.
    fn admit(self: &Arc<Gate>, peer: IpAddr) -> Option<(Ticket, Admission)> {
        let mut table = self.table.lock().ok()?;
        let mut admission = Admission::Admitted;
        let held = table.by_peer.get(&peer).map_or(0, BTreeMap::len);
        if held >= self.limits.per_peer {
            let id = Table::victim(table.by_peer.get(&peer)?.iter())?;
            evict(&mut table, id);
            admission = Admission::Evicted;
        }
        if table.all.len() >= self.limits.total {
            let id = Table::victim(table.all.iter())?;
            evict(&mut table, id);
            admission = Admission::Evicted;
        }
        let id = table.next;
        table.next += 1;
        let slot = Arc::new(Slot {
            peer,
            state: AtomicU8::new(FRESH),
            quiet_since: AtomicU64::new(self.now_ms()),
            requests: AtomicU64::new(0),
            evict: Notify::new(),
        });
        table.all.insert(id, Arc::clone(&slot));
        table
            .by_peer
            .entry(peer)
            .or_default()
            .insert(id, Arc::clone(&slot));
        Some((
            Ticket {
                gate: Arc::clone(self),
                id,
                slot,
            },
            admission,
        ))
    }

    /// Connections held now (all listeners).
    pub fn held(&self) -> usize {
        self.table.lock().map_or(0, |t| t.all.len())
    }
}

/// Frees the slot at once (its socket closes as soon as its task sees the
/// notice).
fn evict(table: &mut Table, id: u64) {
    if let Some(slot) = table.remove(id) {
        slot.evict.notify_one();
    }
}

/// A connection's place in the gate, given back when dropped.
struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    slot: Arc<Slot>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut table) = self.gate.table.lock() {
            table.remove(self.id);
        }
    }
}

/// The socket, noting for the gate whether anything has arrived.
struct Watched {
    stream: TcpStream,
    slot: Arc<Slot>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let state = &self.slot.state;
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                // Bytes of a head: no longer silent (a busy connection
                // reading its body stays busy).
                let _ = state.compare_exchange(FRESH, PARTIAL, Ordering::AcqRel, Ordering::Acquire);
                let _ =
                    state.compare_exchange(SILENT_, PARTIAL, Ordering::AcqRel, Ordering::Acquire);
            }
            Poll::Pending => {
                // Read and found nothing: a connection only now waiting
                // may make room for others.
                let _ = state.compare_exchange(FRESH, SILENT_, Ordering::AcqRel, Ordering::Acquire);
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How one listener serves its connections.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The listener's name in `hoist_connections_total`.
    pub name: &'static str,
    /// More than one request per connection.
    pub keep_alive: bool,
    /// The longest a connection may live, whatever it does.
    pub lifetime: Duration,
}

/// Serves `listener` with `handler` until `stop` completes, under the
/// process's [`Gate`].
pub async fn serve<H, F>(
    listener: tokio::net::TcpListener,
    options: Options,
    metrics: Arc<Metrics>,
    handler: H,
    stop: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_with(listener, Gate::process(), options, metrics, handler, stop).await;
}

/// [`serve`] under `gate`.
pub async fn serve_with<H, F>(
    listener: tokio::net::TcpListener,
    gate: Arc<Gate>,
    options: Options,
    metrics: Arc<Metrics>,
    handler: H,
    stop: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::pin!(stop);
    let mut warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // The peer gave up before it was accepted: nothing to wait for.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                continue;
            }
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE), most likely: the
                // connection stays in the backlog; try again shortly
                // rather than spin, and say so once a minute.
                if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!("{}: accepting a connection: {e}; retrying", options.name);
                    warned = Some(Instant::now());
                }
                metrics.connection(options.name, "accept_error");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((ticket, admission)) = gate.admit(peer.ip()) else {
            metrics.connection(options.name, "refused");
            drop(stream);
            continue;
        };
        if admission == Admission::Evicted {
            metrics.connection(options.name, "evicted");
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            ticket,
            options,
            Arc::clone(&metrics),
            handler.clone(),
        ));
    }
}

/// Serves one connection until it ends, is evicted or a deadline passes.
async fn connection<H, F>(
    stream: TcpStream,
    ticket: Ticket,
    options: Options,
    metrics: Arc<Metrics>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let slot = Arc::clone(&ticket.slot);
    let gate = Arc::clone(&ticket.gate);
    let service = {
        let (slot, gate) = (Arc::clone(&slot), Arc::clone(&gate));
        hyper::service::service_fn(move |request| {
            let (slot, gate, handler) = (Arc::clone(&slot), Arc::clone(&gate), handler.clone());
            async move {
                slot.state.store(BUSY, Ordering::Release);
                slot.requests.fetch_add(1, Ordering::Relaxed);
                let response = handler(request).await;
                // Not yet silent: the answer is still to be written; the
                // next read that finds nothing makes it so.
                slot.quiet_since.store(gate.now_ms(), Ordering::Release);
                slot.state.store(FRESH, Ordering::Release);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let io = hyper_util::rt::TokioIo::new(Watched {
        stream,
        slot: Arc::clone(&slot),
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD)
        .keep_alive(options.keep_alive)
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, service);
    let quiet = async {
        loop {
            let since = slot.quiet_since.load(Ordering::Acquire);
            let allowed = if slot.requests.load(Ordering::Relaxed) == 0 {
                SILENT
            } else {
                IDLE
            };
            let due = gate.started + Duration::from_millis(since) + allowed;
            tokio::time::sleep_until(due.max(Instant::now() + Duration::from_millis(100))).await;
            if slot.quiet_since.load(Ordering::Acquire) == since
                && matches!(slot.state.load(Ordering::Acquire), FRESH | SILENT_)
            {
                return;
            }
        }
    };
    tokio::select! {
        _ = served => {}
        () = slot.evict.notified() => {}
        () = quiet => metrics.connection(options.name, "quiet"),
        () = tokio::time::sleep(options.lifetime) => metrics.connection(options.name, "lifetime"),
    }
    drop(ticket);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(per_peer: usize, total: usize) -> Arc<Gate> {
        Arc::new(Gate::new(Limits { per_peer, total }))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn limits_leave_most_descriptors_to_scans_and_git() {
        let l = Limits::for_open_files(1024);
        assert_eq!((l.per_peer, l.total), (PER_PEER, 256));
        assert_eq!(Limits::for_open_files(1 << 20).total, MAX_TOTAL);
        assert_eq!(Limits::for_open_files(100).total, MIN_TOTAL);
    }

    #[test]
    fn a_full_peer_makes_room_from_its_silent_connections_never_its_busy_ones() {
        let gate = gate(2, 10);
        let (a, _) = gate.admit(ip(1)).unwrap_or_else(|| panic!("admitted"));
        let (b, _) = gate.admit(ip(1)).unwrap_or_else(|| panic!("admitted"));
        // Neither has been read yet: no room.
        assert!(gate.admit(ip(1)).is_none());
        a.slot.state.store(BUSY, Ordering::Release);
        b.slot.state.store(SILENT_, Ordering::Release);
        let (_c, admission) = gate.admit(ip(1)).unwrap_or_else(|| panic!("room from b"));
        assert_eq!(admission, Admission::Evicted);
        // Another peer is not held back by the first one's cap.
        assert!(gate.admit(ip(2)).is_some());
        drop(b);
        assert_eq!(gate.held(), 2, "a and c; the second peer's ticket is gone");
        drop(a);
        assert_eq!(gate.held(), 1);
    }

    #[test]
    fn the_total_cap_makes_room_from_the_oldest_silent_connection_of_any_peer() {
        let gate = gate(10, 3);
        let tickets: Vec<_> = (1..=3)
            .map(|i| gate.admit(ip(i)).unwrap_or_else(|| panic!("admitted")).0)
            .collect();
        for t in &tickets {
            t.slot.state.store(SILENT_, Ordering::Release);
        }
        tickets[0].slot.state.store(PARTIAL, Ordering::Release);
        let (_t, admission) = gate.admit(ip(9)).unwrap_or_else(|| panic!("room"));
        assert_eq!(admission, Admission::Evicted);
        // The silent one went before the older one with half a head.
        let table = gate.table.lock().unwrap_or_else(|e| panic!("{e}"));
        assert!(table.all.contains_key(&tickets[0].id));
        assert!(!table.all.contains_key(&tickets[1].id));
    }
}
