//! systemd's readiness protocol (`Type=notify`): READY, RELOADING and STOPPING on
//! `NOTIFY_SOCKET`.

/// Tells systemd (Type=notify) how the service is doing, if it is listening.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("NOTIFY_SOCKET: {e}");
            return;
        }
    };
    let path = path.to_string_lossy().into_owned();
    let result = match path.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = result {
        tracing::warn!("NOTIFY_SOCKET {path}: {e}");
    }
}
