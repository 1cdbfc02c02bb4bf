//! `sync-linode`'s refusal of a signed zone: Linode's DNS Manager serves no DNSSEC, so its
//! unsigned answers would fail validation under the signed zone's DS at the parent.

use lct_core::cli::UsageError;
use lct_dns::config::Config;
use lct_dns::zone::DnsRecord;

/// Refuses `domain` when it is signed by lct-dns here: its key in this machine's state
/// directory (looked at before the records are read).
pub fn refuse_signed_here(domain: &str) -> anyhow::Result<()> {
    let signed_here =
        lct_dns::zonekeys::key_file(&lct_core::state::state_dir().join("dns"), &lct_dns::zone::fqdn(domain));
    if signed_here.exists() {
        return Err(UsageError(format!(
            "zone {domain} is signed with DNSSEC by lct-dns ({}); Linode's DNS Manager serves no DNSSEC, \
             so its unsigned answers would fail validation under the DS of the signed zone: serve it \
             with lct-dns, or turn [dnssec] off and remove the key and the DS first",
            signed_here.display()
        ))
        .into());
    }
    Ok(())
}

/// Refuses `domain` when it is signed elsewhere: by its lct-dns configuration (`[dnssec]`), or by its name servers answering a DNSKEY set. The
/// servers asked are `check_servers`, else the glue of the zone's NS records, on port 53.
pub fn refuse_signed(
    domain: &str,
    config: Option<&std::path::Path>,
    check_servers: &[std::net::SocketAddr],
    records: &[DnsRecord],
) -> anyhow::Result<()> {
    let zone = lct_dns::zone::fqdn(&domain.to_ascii_lowercase());
    let refuse = |why: String| -> anyhow::Result<()> {
        Err(UsageError(format!(
            "zone {domain} is signed with DNSSEC ({why}); Linode's DNS Manager serves no DNSSEC, so its \
             unsigned answers would fail validation under the DS of the signed zone: serve it with \
             lct-dns, or turn [dnssec] off and remove the key and the DS first"
        ))
        .into())
    };
    if let Some(path) = config {
        let config = Config::load(path)?;
        let signs = config.dnssec.iter().any(|(z, choice)| {
            lct_dns::zone::fqdn(&z.to_ascii_lowercase()) == zone
                && !matches!(choice, lct_dns::config::DnssecChoice::Off)
        });
        if signs {
            return refuse(format!("[dnssec] in {}", path.display()));
        }
    }
    let mut servers = check_servers.to_vec();
    if servers.is_empty() {
        // The zone's name servers by their glue (addresses the records give them).
        for ns in records.iter().filter(|r| r.zone == zone && r.name == zone && r.rtype == lct_dns::RecordType::NS) {
            let target = ns.data.to_ascii_lowercase();
            servers.extend(
                records
                    .iter()
                    .filter(|r| {
                        r.name == target && matches!(r.rtype, lct_dns::RecordType::A | lct_dns::RecordType::AAAA)
                    })
                    .filter_map(|r| r.data.parse::<std::net::IpAddr>().ok())
                    .map(|ip| std::net::SocketAddr::new(ip, 53)),
            );
        }
        servers.sort();
        servers.dedup();
    }
    if servers.is_empty() {
        tracing::warn!("zone {domain}: no name server address to ask whether it is signed (give --check-server)");
        return Ok(());
    }
    // Every server asked: one view signed is enough to refuse.
    let (mut answered, mut failures) = (0, Vec::new());
    for server in &servers {
        match lct_dns::client::serves_dnskey(*server, &zone, std::time::Duration::from_secs(3)) {
            Ok(true) => return refuse(format!("{server} serves its DNSKEY set")),
            Ok(false) => answered += 1,
            Err(e) => failures.push(e.to_string()),
        }
    }
    if answered == 0 && check_servers.is_empty() {
        // The records' name servers may be placeholders (ns1.DOMAIN=127.0.0.1) or out of
        // reach from here: said, not fatal; --check-server and --config are the sure ways.
        tracing::warn!(
            "zone {domain}: no name server answered whether it is signed ({}); give --check-server or --config",
            failures.join("; ")
        );
    } else if answered == 0 {
        anyhow::bail!(
            "zone {domain}: cannot tell whether it is signed, no name server answered ({}); nothing was changed",
            failures.join("; ")
        );
    }
    Ok(())
}
