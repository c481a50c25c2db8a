//! List and watch: pages of a list (limit/continue, resourceVersion
//! semantics), and the watch stream of events and bookmarks.

use super::*;

pub(super) fn list(
    req: &Request,
    w: &mut TcpStream,
    shared: &Arc<Shared>,
    t: &Target,
    sel: &Selectors,
) -> io::Result<()> {
    let limit: usize = req
        .query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut store = shared.store.lock().unwrap();
    let (snap_id, offset) = match req.query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let parsed = c
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<usize>().ok()?)));
            match parsed.filter(|(id, _)| store.snapshots.contains_key(id)) {
                Some(p) => p,
                None => {
                    drop(store);
                    let st = status(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result. \
                         You can start a new list without the continue parameter.",
                    );
                    return write_response(w, 410, &st, req.close);
                }
            }
        }
        None => {
            let items = store.list(t.res, t.ns.as_deref(), sel);
            let id = store.next_snapshot;
            store.next_snapshot += 1;
            let rv = store.rv;
            store.snapshots.insert(id, Snapshot { rv, items });
            while store.snapshots.len() > 64 {
                store.snapshots.pop_first();
            }
            (id, 0)
        }
    };
    let snap = &store.snapshots[&snap_id];
    let rv = snap.rv;
    let end = if limit == 0 {
        snap.items.len()
    } else {
        (offset + limit).min(snap.items.len())
    };
    // The page's objects are shared with the store: serialized after the
    // lock is released, straight into the body (a list of 100k objects is
    // 600 MB of JSON; cloning each page into one `Value` first held the
    // lock against every other list and watch for as long).
    let items: Vec<Arc<Value>> = snap.items[offset.min(end)..end].to_vec();
    let remaining = snap.items.len() - end;
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if remaining > 0 {
        meta["continue"] = json!(format!("{snap_id}:{end}"));
        meta["remainingItemCount"] = json!(remaining);
    }
    if remaining == 0 {
        store.snapshots.remove(&snap_id);
    }
    drop(store);
    let head = json!({"kind": format!("{}List", t.res.kind()), "apiVersion": t.res.api_version(),
                      "metadata": meta});
    // `{"kind":…,"apiVersion":…,"metadata":…` then `,"items":[…]}`.
    let mut body = serde_json::to_vec(&head).unwrap_or_default();
    body.pop();
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &**item).map_err(io::Error::other)?;
    }
    body.extend_from_slice(b"]}");
    write_body(w, 200, &body, req.close)?;
    if remaining == 0 {
        let served = (t.res, std::time::SystemTime::now());
        shared.lists_served.lock().unwrap().push(served);
    }
    Ok(())
}

pub(super) fn event(kind: &str, obj: &Value) -> Vec<u8> {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    v
}

pub(super) fn bookmark(res: Resource, rv: u64, initial_end: bool) -> Vec<u8> {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event(
        "BOOKMARK",
        &json!({"kind": res.kind(), "apiVersion": res.api_version(), "metadata": meta}),
    )
}

/// The watch event a change produces for one watcher, if any.
pub(super) fn translate(c: &Change, t: &Target, sel: &Selectors) -> Option<Vec<u8>> {
    if c.key.0 != t.res || t.ns.as_ref().is_some_and(|ns| *ns != c.key.1) {
        return None;
    }
    let was = c.old.as_ref().map(|o| sel.matches(o));
    if c.deleted {
        return (was == Some(true)).then(|| event("DELETED", &c.new));
    }
    match (was, sel.matches(&c.new)) {
        (Some(true), true) => Some(event("MODIFIED", &c.new)),
        (_, true) => Some(event("ADDED", &c.new)),
        (Some(true), false) => {
            // As the API server's watch cache does: the previous content
            // (the one that matched), at this change's resourceVersion.
            let mut last = (**c.old.as_ref()?).clone();
            last["metadata"]["resourceVersion"] = json!(c.rv.to_string());
            Some(event("DELETED", &last))
        }
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn watch(
    req: &Request,
    w: &mut TcpStream,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    id: u64,
    t: &Target,
    sel: &Selectors,
) -> io::Result<()> {
    let q = |k: &str| req.query.get(k).map(String::as_str);
    let bookmarks = matches!(q("allowWatchBookmarks"), Some("1" | "true"));
    let initial = matches!(q("sendInitialEvents"), Some("1" | "true"));
    let timeout = q("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800u64);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let epoch = shared.watch_epoch.load(Ordering::SeqCst);
    shared.mark_watch(id);

    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    w.flush()?;

    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut store = shared.store.lock().unwrap();
    let mut last = match q("resourceVersion").filter(|v| !v.is_empty() && !initial) {
        Some(v) if v != "0" => match v.parse::<u64>() {
            Ok(n) if n >= store.floor => n,
            Ok(n) => {
                let msg = format!("too old resource version: {n} ({})", store.floor + 1);
                drop(store);
                write_chunk(w, &event("ERROR", &status(410, "Expired", &msg)))?;
                return write_chunk(w, b"");
            }
            Err(_) => {
                drop(store);
                write_chunk(
                    w,
                    &event(
                        "ERROR",
                        &status(400, "BadRequest", &format!("invalid resourceVersion {v:?}")),
                    ),
                )?;
                return write_chunk(w, b"");
            }
        },
        _ => {
            // No version, "0" or a streaming list: the current state first.
            for o in store.list(t.res, t.ns.as_deref(), sel) {
                out.push(event("ADDED", &o));
            }
            if initial {
                out.push(bookmark(t.res, store.rv, true));
            }
            store.rv
        }
    };
    let mut next_bookmark = Instant::now() + *shared.bookmark_interval.lock().unwrap();
    loop {
        let dropped =
            stop.load(Ordering::SeqCst) || shared.watch_epoch.load(Ordering::SeqCst) != epoch;
        if dropped {
            drop(store);
            // Abrupt: no terminating chunk, the connection just goes away.
            let _ = w.shutdown(Shutdown::Both);
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "watch dropped",
            ));
        }
        if last < store.floor {
            let msg = format!("too old resource version: {last} ({})", store.floor + 1);
            out.push(event("ERROR", &status(410, "Expired", &msg)));
            drop(store);
            for e in &out {
                write_chunk(w, e)?;
            }
            return write_chunk(w, b"");
        }
        for c in store.history.iter().filter(|c| c.rv > last) {
            if let Some(e) = translate(c, t, sel) {
                out.push(e);
            }
        }
        last = store.rv;
        let now = Instant::now();
        if bookmarks && now >= next_bookmark {
            out.push(bookmark(t.res, last, false));
            next_bookmark = now + *shared.bookmark_interval.lock().unwrap();
        }
        if !out.is_empty() {
            drop(store);
            for e in out.drain(..) {
                write_chunk(w, &e)?;
            }
            store = shared.store.lock().unwrap();
            continue;
        }
        if now >= deadline {
            drop(store);
            return write_chunk(w, b"");
        }
        let mut wake = deadline.min(now + Duration::from_millis(200));
        if bookmarks {
            wake = wake.min(next_bookmark);
        }
        store = shared
            .changed
            .wait_timeout(store, wake.saturating_duration_since(now))
            .unwrap()
            .0;
    }
}
