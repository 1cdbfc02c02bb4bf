//! Running the server: every socket bound before any is served, a thread per UDP socket and
//! a task per TCP listener, the secondary zones followed, systemd told how it goes, and the
//! configuration reloaded on SIGHUP without dropping a query (a bad one is refused and the
//! previous zones serve on).

use std::path::PathBuf;

use anyhow::Context;

use crate::config::Config;
use crate::live::Live;
use crate::systemd::notify;
use crate::udp::udp_sockets;

/// Serves `live` as `config` says until SIGTERM or Ctrl-C; SIGHUP reloads `config_path` (or
/// the records of `config` when there is no file).
pub async fn serve(live: Live, config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let per_address = config.udp_sockets.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rrl = crate::rrl::RateLimit::new(&config.rate_limit)?.map(std::sync::Arc::new);
    // One table of TCP connections for all addresses, and file descriptors for them.
    let tcp_clients = config.tcp_clients.unwrap_or(crate::tcp::TCP_CLIENTS);
    crate::tcp::raise_file_limit(tcp_clients + 256);
    let connections = crate::tcp::Connections::new(tcp_clients);
    // What is served now may differ from the state file (the records file newer, a key
    // step's serial, the update log replayed): written whole before any update can come,
    // so the next update's log line follows it.
    fold_update_log(&live, "at start").await;
    // Every socket bound before any is served: a client that gets a UDP answer can open a
    // TCP connection (a secondary's transfer right after our start).
    let mut bound = Vec::new();
    // The statistics listener first: counting is on before the first query.
    if let Some(stats) = &config.stats {
        crate::scrape::listen(stats, live.clone()).await?;
    }
    for addr in &config.listen {
        let udp = udp_sockets(*addr, per_address).with_context(|| format!("binding UDP {addr}"))?;
        let tcp = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding TCP {addr}"))?;
        bound.push((udp, tcp, config.public.contains(addr)));
    }
    for (udp, tcp, public) in bound {
        tokio::spawn(crate::tcp::tcp_loop(tcp, public, live.clone(), connections.clone()));
        for udp in udp {
            let (live, rrl, runtime) = (live.clone(), rrl.clone(), tokio::runtime::Handle::current());
            std::thread::Builder::new()
                .name("lct-dns-udp".into())
                .spawn(move || crate::udp::udp_batch_loop(udp, public, live, rrl, runtime))
                .context("starting a UDP thread")?;
        }
    }
    crate::secondary::follow_all(&live);
    tokio::spawn(crate::resign::refresh_loop(live.clone()));
    // A signed zone may have a new serial from a key step taken at this start
    // ([`crate::keyserial`]): its secondaries are told now, not at their next refresh (a
    // secondary already holding the serial asks and transfers nothing).
    let current = live.current();
    crate::notify::zones_changed(&current, &current.settings.dnssec.zones());
    crate::notify::regions_read(&current);

    tracing::info!("serving on {:?}", config.listen);
    notify("READY=1");
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut config = config;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                notify("RELOADING=1");
                // A bad configuration or zone is refused with a log line; the old one serves on.
                let reloaded = match &config_path {
                    Some(path) => Config::load(path).map_err(anyhow::Error::from),
                    None => Ok(config.clone()),
                }
                .and_then(|c| c.for_reload(&config).map_err(|e| anyhow::anyhow!("{}", e)));
                let turn = live.update_lock().await;
                let held = live.current();
                match reloaded.and_then(|c| c.load_served(Some(&held.records)).map(|v| (c, v))) {
                    Ok((c, served)) => {
                        if c.rate_limit != config.rate_limit
                            || c.tcp_clients != config.tcp_clients
                            || c.udp_sockets != config.udp_sockets
                            || c.primaries != config.primaries
                            || c.stats != config.stats
                        {
                            tracing::warn!(
                                "reload: udp_sockets, tcp_clients, rate_limit, stats and [[primary]] change only on restart"
                            );
                        }
                        live.swap(served);
                        crate::notify::regions_read(&live.current());
                        fold_update_log(&live, "after a reload").await;
                        config = c;
                        tracing::info!("reloaded: {} records", live.current().records.len());
                    }
                    Err(e) => tracing::error!("reload refused, still serving the previous zones: {e:#}"),
                }
                drop(turn);
                notify("READY=1");
            }
        }
    }
    notify("STOPPING=1");
    // A clean stop leaves no log to replay (an update in progress finishes first).
    let turn = live.update_lock().await;
    fold_update_log(&live, "at stop").await;
    drop(turn);
    Ok(())
}

/// Writes the zones served whole to the state file and empties the update log
/// ([`crate::updatelog`]); the caller holds the update lock (or no update runs yet), so no
/// line is appended meanwhile. A fold that fails leaves the log's base off the disk: the
/// next update retries it, and is refused (SERVFAIL) while it still fails, rather than
/// appending a line a restart could not apply.
async fn fold_update_log(live: &Live, when: &str) {
    let current = live.current();
    let failed = match tokio::task::spawn_blocking(move || crate::updatelog::fold(&current)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(e) => Some(e.to_string()),
    };
    live.set_log_base_kept(failed.is_none());
    if let Some(e) = failed {
        tracing::error!("writing the zones {when} failed, updates are refused until it succeeds: {e}");
    }
}
