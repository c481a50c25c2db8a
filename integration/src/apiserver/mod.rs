//! A Kubernetes API server stand-in for tests: plain HTTP/1.1 that speaks
//! the real list/watch protocol to the real kube-rs client, for Services,
//! EndpointSlices (discovery.k8s.io/v1), Nodes, ServiceCIDRs
//! (networking.k8s.io/v1) and Calico BlockAffinities. A resource can be
//! made to answer 404 (an API server without it) or 403 (a role without
//! it): [`ApiServer::refuse`].
//!
//! - **Store**: objects are JSON values; every change takes the next
//!   value of one global resourceVersion counter and is kept in a history
//!   that watches replay from.
//! - **List** (`GET /api/v1/services`, `/api/v1/namespaces/{ns}/services`,
//!   `/apis/discovery.k8s.io/v1[/namespaces/{ns}]/endpointslices`,
//!   `/api/v1/nodes`) returns a `*List` with `metadata.resourceVersion`,
//!   honours `labelSelector`, `fieldSelector`, `limit` and `continue` (a
//!   consistent snapshot; a continue token older than [`ApiServer::compact`]
//!   answers HTTP 410 `Expired`). Single objects: `GET .../{name}`.
//! - **Watch** (`?watch=1&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=T`)
//!   streams newline-delimited `{"type":…,"object":…}` events in chunked
//!   encoding: everything after N, then live changes; `BOOKMARK` every
//!   [`ApiServer::set_bookmark_interval`] when asked; a clean end after T
//!   seconds. A version older than the kept history gets what the real API
//!   server sends: HTTP 200 and one `ERROR` event carrying a `Status` with
//!   code 410 (kube-rs's watcher re-lists on exactly that; an HTTP 410 on
//!   the watch request would make it retry the same version forever).
//!   Without a version (or "0") the watch starts with `ADDED` for every
//!   current object; `sendInitialEvents=true` (streaming lists) adds the
//!   `k8s.io/initial-events-end` bookmark.
//! - Label selectors (`=`, `!=`, `in`, `notin`, `key` and `!key`) that
//!   change match turn MODIFIED into ADDED/DELETED for that watcher, as the
//!   real watch cache does; the DELETED event carries the object as it was
//!   while it matched, with the change's resourceVersion.
//! - Also served: `/version`, `/healthz`, `/livez`, `/readyz` and the
//!   discovery documents `/api`, `/apis`, `/api/v1`,
//!   `/apis/discovery.k8s.io[/v1]`. Anything but GET answers 405, except
//!   for events.k8s.io/v1 Events: create, patch, get and list, validated
//!   as the real API server does (see `events.rs`); read them with
//!   [`ApiServer::events`].

mod events;
mod http;
mod store;

pub use store::{BadObject, Resource};

use serde_json::Value;
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};
use store::Store;

/// How much of its state the stand-in keeps across [`ApiServer::restart`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Objects and the whole history: clients resume their watches.
    KeepAll,
    /// Objects and the resourceVersion counter, but no history (like a real
    /// API server rebuilding its watch cache from etcd): resumed watches
    /// from before the restart get 410 and clients re-list.
    KeepObjects,
    /// Nothing but the counter, which moves on by one so that every
    /// client's version is too old: an empty cluster (clients get 410,
    /// re-list and drop every object).
    Empty,
}

/// State shared by the control API and the server threads.
pub(crate) struct Shared {
    store: Mutex<Store>,
    changed: Condvar,
    delay: Mutex<Duration>,
    bookmark_interval: Mutex<Duration>,
    /// Open connections: a clone to shut down, and whether it is a watch.
    conns: Mutex<HashMap<u64, (TcpStream, bool)>>,
    next_conn: AtomicU64,
    /// Bumped by drop_watches: watches started before end abruptly.
    watch_epoch: AtomicU64,
    log: Mutex<Vec<String>>,
    /// Resources answered with this HTTP status instead of served.
    refused: Mutex<HashMap<Resource, u16>>,
    /// Every complete list served: resource, wall time its last byte was
    /// written.
    lists_served: Mutex<Vec<(Resource, SystemTime)>>,
}

impl Shared {
    fn register(&self, s: &TcpStream) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::SeqCst);
        if let Ok(c) = s.try_clone() {
            self.conns.lock().unwrap().insert(id, (c, false));
        }
        id
    }
    fn unregister(&self, id: u64) {
        self.conns.lock().unwrap().remove(&id);
    }
    fn mark_watch(&self, id: u64) {
        if let Some(c) = self.conns.lock().unwrap().get_mut(&id) {
            c.1 = true;
        }
    }
    /// Shuts down open connections (only watches when `watches_only`);
    /// returns how many.
    fn close_conns(&self, watches_only: bool) -> usize {
        let conns = self.conns.lock().unwrap();
        let mut n = 0;
        for (s, watch) in conns.values() {
            if *watch || !watches_only {
                let _ = s.shutdown(Shutdown::Both);
                n += 1;
            }
        }
        n
    }
    fn log(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }
    fn notify(&self) {
        // Take the lock so a watcher between its check and its wait
        // cannot miss the wake-up.
        let _g = self.store.lock().unwrap();
        self.changed.notify_all();
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The API server stand-in. Control methods take `&self`, so one server
/// can be shared by reference between a test and its helper threads.
/// Dropping it stops the server.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    netns: Option<String>,
    running: Mutex<Option<Running>>,
}

/// Binds (after joining `netns` when given: network namespaces are per
/// thread, and a socket stays in the namespace it was created in), then
/// serves on this thread until stopped.
fn spawn_listener(
    shared: Arc<Shared>,
    addr: SocketAddr,
    netns: Option<String>,
) -> io::Result<(SocketAddr, Running)> {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("apiserver-standin".into())
        .spawn(move || {
            let bound = (|| -> io::Result<TcpListener> {
                if let Some(ns) = &netns {
                    let f = std::fs::File::open(format!("/run/netns/{ns}"))?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(io::Error::from)?;
                }
                // The old listener of a restart may take a moment to go away.
                let mut tries = 0;
                let l = loop {
                    match TcpListener::bind(addr) {
                        Ok(l) => break l,
                        Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 100 => {
                            tries += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(e),
                    }
                };
                l.set_nonblocking(true)?;
                Ok(l)
            })();
            match bound {
                Ok(l) => {
                    let _ = tx.send(l.local_addr());
                    http::accept_loop(l, shared, stop2);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })?;
    let addr = rx
        .recv()
        .map_err(|_| io::Error::other("stand-in listener thread died"))??;
    Ok((addr, Running { stop, thread }))
}

impl ApiServer {
    /// Starts serving on `addr` (port 0 picks one) in this process's
    /// network namespace.
    pub fn start(addr: SocketAddr) -> io::Result<ApiServer> {
        Self::start_with(addr, None)
    }

    /// Starts serving on `addr` inside network namespace `netns` (a name
    /// under /run/netns, as `ip netns add` makes it); needs root. Processes
    /// run with `ip netns exec <netns>` reach it at [`ApiServer::addr`].
    pub fn start_in_netns(netns: &str, addr: SocketAddr) -> io::Result<ApiServer> {
        Self::start_with(addr, Some(netns.to_string()))
    }

    fn start_with(addr: SocketAddr, netns: Option<String>) -> io::Result<ApiServer> {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                max_history: 10_000,
                ..Store::default()
            }),
            changed: Condvar::new(),
            delay: Mutex::new(Duration::ZERO),
            bookmark_interval: Mutex::new(Duration::from_secs(5)),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            watch_epoch: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            refused: Mutex::new(HashMap::new()),
            lists_served: Mutex::new(Vec::new()),
        });
        let (addr, running) = spawn_listener(shared.clone(), addr, netns.clone())?;
        Ok(ApiServer {
            shared,
            addr,
            netns,
            running: Mutex::new(Some(running)),
        })
    }

    /// The address it listens on (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server (no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             users:\n- name: standin\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    \
             cluster: standin\n    user: standin\ncurrent-context: standin\n",
            self.url()
        )
    }

    /// Writes [`ApiServer::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Creates or replaces an object (by kind, namespace, name; the
    /// namespace defaults to "default"): watchers see ADDED or MODIFIED.
    /// Sets `resourceVersion`, keeps `uid` and `creationTimestamp` of the
    /// object it replaces. Returns the new resourceVersion.
    pub fn apply(&self, obj: Value) -> Result<u64, BadObject> {
        let rv = self.shared.store.lock().unwrap().apply(obj)?;
        self.shared.notify();
        Ok(rv)
    }

    /// Deletes an object (`kind` is "Service", "EndpointSlice" or "Node",
    /// or the plural; `ns` is ignored for Nodes): watchers see DELETED.
    /// Returns the deletion's resourceVersion, None if there was no such
    /// object. Panics on an unknown kind.
    pub fn delete(&self, kind: &str, ns: &str, name: &str) -> Option<u64> {
        let res =
            Resource::parse(kind).unwrap_or_else(|| panic!("stand-in: unsupported kind {kind:?}"));
        let rv = self.shared.store.lock().unwrap().delete(res, ns, name);
        self.shared.notify();
        rv
    }

    /// The stored object, if any.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let res = Resource::parse(kind)?;
        let ns = if res.namespaced() { ns } else { "" };
        let store = self.shared.store.lock().unwrap();
        store
            .objects
            .get(&(res, ns.to_string(), name.to_string()))
            .map(|o| (**o).clone())
    }

    /// Every events.k8s.io/v1 Event created (as patched since), by
    /// namespace and name.
    pub fn events(&self) -> Vec<Value> {
        self.shared.store.lock().unwrap().events.all()
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv
    }

    /// Drops all history and paginated-list snapshots: watches (new or
    /// running) from an older resourceVersion get a 410 ERROR event,
    /// continue tokens answer HTTP 410.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
        self.shared.notify();
    }

    /// Keeps at most `n` changes of history (default 10,000); older
    /// versions get 410.
    pub fn set_max_history(&self, n: usize) {
        self.shared.store.lock().unwrap().max_history = n;
    }

    /// Closes every open watch connection abruptly (no terminating
    /// chunk), as a dying API server or a load balancer would. Returns how
    /// many were open.
    pub fn drop_watches(&self) -> usize {
        self.shared.watch_epoch.fetch_add(1, Ordering::SeqCst);
        let n = self.shared.close_conns(true);
        self.shared.notify();
        n
    }

    /// Open watch connections now.
    pub fn open_watches(&self) -> usize {
        self.shared
            .conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.1)
            .count()
    }

    /// Delays every response (list, get, the start of a watch) by `d`.
    pub fn set_delay(&self, d: Duration) {
        *self.shared.delay.lock().unwrap() = d;
    }

    /// How often watches that allow bookmarks get one (default 5 s).
    pub fn set_bookmark_interval(&self, d: Duration) {
        *self.shared.bookmark_interval.lock().unwrap() = d;
        self.shared.notify();
    }

    /// Answers every request for `res` (list, get, watch) with `code`
    /// instead of serving it: 404 as an API server that does not have the
    /// resource (a Status `NotFound`), 403 as one whose RBAC does not let
    /// the client at it (a Status `Forbidden`); `None` serves it again.
    /// Watches already running go on.
    pub fn refuse(&self, res: Resource, code: Option<u16>) {
        let mut refused = self.shared.refused.lock().unwrap();
        match code {
            Some(code) => refused.insert(res, code),
            None => refused.remove(&res),
        };
    }

    /// Every complete list served so far, in order: its resource and the
    /// wall time the stand-in wrote the last byte of its last page (of the
    /// whole list when not paginated) to the socket. A benchmark's "the
    /// lists are complete" is the latest first list of each kind.
    pub fn lists_served(&self) -> Vec<(Resource, SystemTime)> {
        self.shared.lists_served.lock().unwrap().clone()
    }

    /// Every request so far as `METHOD /path?query`, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Stops listening and closes every connection; the state stays for
    /// [`ApiServer::restart`]. Changes made while stopped are kept too.
    pub fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(r) = running {
            r.stop.store(true, Ordering::SeqCst);
            self.shared.close_conns(false);
            self.shared.notify();
            let _ = r.thread.join();
        }
    }

    /// Whether it is serving.
    pub fn is_running(&self) -> bool {
        self.running.lock().unwrap().is_some()
    }

    /// Stops (if running) and serves again on the same address (and
    /// namespace), keeping what `keep` says.
    pub fn restart(&self, keep: Restart) -> io::Result<()> {
        self.stop();
        {
            let mut store = self.shared.store.lock().unwrap();
            match keep {
                Restart::KeepAll => {}
                Restart::KeepObjects => store.compact(),
                Restart::Empty => {
                    // Past every version a client holds: all get 410.
                    store.objects.clear();
                    store.rv += 1;
                    store.compact();
                }
            }
        }
        let (_, running) = spawn_listener(self.shared.clone(), self.addr, self.netns.clone())?;
        *self.running.lock().unwrap() = Some(running);
        Ok(())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}
