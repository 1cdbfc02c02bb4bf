//! NOTIFY (RFC 1996): when a zone's serial changes, each secondary configured for it hears
//! so at its `notify` addresses, in a message signed with its key, resent until it answers
//! (five tries, 2, 4, 8... seconds apart), so it fetches the change at once instead of at
//! its next SOA refresh.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::served::Served;
use crate::tsig::{Key, now};
use crate::wire::serial_of;

/// Sends NOTIFY for each of `zones` to the secondaries that take it, in the background
/// (nothing happens outside a runtime: a tool that changes no served zone). A region's
/// secondary is not among them: its view does not change with this server's records.
pub fn zones_changed(served: &Served, zones: &[String]) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    for zone in zones {
        let serial = serial_of(&served.records, zone).unwrap_or_default();
        for secondary in served.settings.secondaries.iter().filter(|s| s.region.is_none() && s.serves(zone)) {
            for target in &secondary.notify {
                spawn(&runtime, zone, &secondary.key, *target, &format!("serial {serial}"));
            }
        }
    }
}

/// Sends NOTIFY to each region's secondary for every zone it takes, once the region views
/// were read (at start and on reload, whole from their files): whether its region's view
/// changed is for the secondary to see (it asks the SOA, and transfers only a newer one).
pub fn regions_read(served: &Served) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    for secondary in &served.settings.secondaries {
        let Some(network) = &secondary.region else { continue };
        for (zone, _) in served.zone_serials().iter().filter(|(zone, _)| secondary.serves(zone)) {
            for target in &secondary.notify {
                spawn(&runtime, zone, &secondary.key, *target, &format!("region {network}'s view"));
            }
        }
    }
}

/// One NOTIFY in the background, its outcome counted and logged (`what`: what changed).
fn spawn(runtime: &tokio::runtime::Handle, zone: &str, key: &Key, target: SocketAddr, what: &str) {
    let (zone, key, what) = (zone.to_string(), key.clone(), what.to_string());
    runtime.spawn(async move {
        match notify(&zone, &key, target).await {
            Ok(()) => {
                crate::stats::event(crate::stats::Event::NotifySent);
                tracing::info!("zone {zone}: {what} notified to {target}")
            }
            Err(e) => {
                crate::stats::event(crate::stats::Event::NotifyUnanswered);
                tracing::warn!("zone {zone}: NOTIFY to {target} unanswered: {e}")
            }
        }
    });
}

/// One NOTIFY, until answered.
pub async fn notify(zone: &str, key: &Key, target: SocketAddr) -> std::io::Result<()> {
    let name = Name::from_ascii(zone).map_err(std::io::Error::other)?;
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("an address");
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    let mut wait = Duration::from_secs(2);
    for _ in 0..5 {
        let id = crate::client::rand_id().map_err(std::io::Error::other)?;
        let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
        message.metadata.authoritative = true;
        message.add_query(Query::query(name.clone(), RecordType::SOA));
        // Signed anew each try: TSIG's time must be fresh.
        message.finalize(&key.signer(), now()).map_err(std::io::Error::other)?;
        let bytes = message.to_vec().map_err(std::io::Error::other)?;
        socket.send_to(&bytes, target).await?;
        let mut buf = [0u8; 1500];
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok((n, from))) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            // The answer: from the target, to this message (its content is not ours to judge).
            if from == target && n >= 12 && buf[0..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 {
                return Ok(());
            }
        }
        wait *= 2;
    }
    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer after 5 tries"))
}
