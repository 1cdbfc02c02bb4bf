//! Public DNS at Linode: `lct-dns sync-linode` makes the DNS Manager serve a zone's external
//! view (public addresses only), as an idempotent diff in the way Terraform keeps what it
//! manages: lct remembers the ids of the records it made (per domain, in lct's state:
//! `dns/linode-DOMAIN.json`, shared by every controller of a team on etcd), touches
//! only those, adopts records that already say exactly what it wants, and leaves every
//! other record of the domain alone. Each run makes what differs and nothing else: creates,
//! updates (a name whose address or TTL changed keeps its record), deletes.
//!
//! What it syncs: A and AAAA records of node and group names. SRV records of cluster
//! services are not: Linode's SRV records live at `_service._protocol.DOMAIN` only, not under
//! a cluster's subdomain where lct-dns serves them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use lct_api::linode::api::Linode;
use lct_api::linode::types::DomainRecord;
use lct_core::store::{Expect, Secrecy, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::zone::{DnsRecord, RecordType, View, fqdn};

/// One record change at Linode: the `dns-linode-change` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinodeChange {
    pub domain: String,
    /// create, update, delete, or adopt (an existing record that already says what lct wants)
    pub action: String,
    /// Relative to the domain (`zk-1.zk`).
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub target: String,
    pub ttl: u32,
    /// Linode's record id (none for a create not made: a dry run).
    pub id: Option<u64>,
    pub dry_run: bool,
}

impl lct_core::record::Record for LinodeChange {
    const KIND: &'static str = "dns-linode-change";
    const VERSION: u32 = 1;
}

impl lct_core::table::Tabular for LinodeChange {
    const HEADERS: &'static [&'static str] = &["ACTION", "NAME", "TYPE", "TARGET", "TTL"];
    fn row(&self) -> Vec<String> {
        let name = if self.name.is_empty() { self.domain.clone() } else { format!("{}.{}", self.name, self.domain) };
        let action = if self.dry_run { format!("{} (dry run)", self.action) } else { self.action.clone() };
        vec![action, name, self.record_type.clone(), self.target.clone(), self.ttl.to_string()]
    }
}

/// Which records of the domain are lct's: kept in lct's state ([`state_key`]).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Owned {
    domain_id: u64,
    records: BTreeSet<u64>,
}

/// A record as compared: relative name, type, canonical target.
type Key = (String, String, String);

/// Where lct keeps which records of `domain` at Linode are its own: `dns/linode-DOMAIN.json`
/// (in the local directory the file `STATE/dns/linode-DOMAIN.json`, as before the store).
pub fn state_key(domain: &str) -> Result<lct_core::store::Key, lct_core::store::KeyError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    lct_core::store::Key::new(format!("dns/linode-{domain}.json"))
}

/// The records lct wants at Linode for `domain`: the external view's A and AAAA.
pub fn desired(records: &[DnsRecord], domain: &str) -> BTreeMap<Key, u32> {
    let zone = fqdn(&domain.to_ascii_lowercase());
    records
        .iter()
        .filter(|r| r.zone == zone && r.view.includes(View::External))
        .filter(|r| matches!(r.rtype, RecordType::A | RecordType::AAAA))
        .filter_map(|r| {
            let name =
                if r.name == zone { String::new() } else { r.name.strip_suffix(&format!(".{zone}"))?.to_string() };
            let target = r.data.parse::<IpAddr>().ok()?.to_string();
            Some(((name, r.rtype.to_string(), target), r.ttl))
        })
        .collect()
}

fn key_of(r: &DomainRecord) -> Key {
    let target = r.target.parse::<IpAddr>().map_or(r.target.clone(), |a| a.to_string());
    (r.name.to_ascii_lowercase(), r.record_type.clone(), target)
}

/// Brings the domain's records at Linode in line with `want` (from [`desired`]); returns
/// what changed. Which records are lct's is written to `store` after every change, so an
/// interrupted run is finished by the next; each write expects what the last one left, so
/// two controllers syncing one domain at once cannot lose each other's records silently
/// (the second is told to run again).
pub async fn sync(
    api: &Linode,
    domain: &str,
    want: &BTreeMap<Key, u32>,
    soa_email: &str,
    store: &dyn Store,
    dry_run: bool,
) -> anyhow::Result<Vec<LinodeChange>> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let change = |action: &str, key: &Key, ttl: u32, id: Option<u64>| LinodeChange {
        domain: domain.clone(),
        action: action.into(),
        name: key.0.clone(),
        record_type: key.1.clone(),
        target: key.2.clone(),
        ttl,
        id,
        dry_run,
    };
    let found = api.domains().await?.into_iter().find(|d| d.domain.eq_ignore_ascii_case(&domain));
    let Some(found) = found else {
        if dry_run {
            return Ok(want.iter().map(|(k, ttl)| change("create", k, *ttl, None)).collect());
        }
        tracing::info!("domain {domain}: not at Linode yet: creating it");
        api.create_domain(&domain, soa_email).await?;
        return Box::pin(sync(api, &domain, want, soa_email, store, dry_run)).await;
    };
    let state = state_key(&domain)?;
    // A store that does not answer fails the sync (never taken for "lct owns nothing").
    let read = store.get(&state)?;
    let place = || format!("{} {state}", store.describe());
    let mut owned: Owned = match &read {
        None => Owned { domain_id: found.id, records: BTreeSet::new() },
        Some(entry) => serde_json::from_slice(&entry.value).map_err(|e| {
            anyhow::anyhow!("{}: not lct's list of its records at Linode ({e}); remove it to start over", place())
        })?,
    };
    if owned.domain_id != found.id {
        // The domain was made anew at Linode: none of the old ids are in it.
        owned = Owned { domain_id: found.id, records: BTreeSet::new() };
    }
    let last = std::cell::Cell::new(Expect::from_read(read.as_ref()));
    let save = |owned: &Owned| -> anyhow::Result<()> {
        if dry_run {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(owned)?;
        match store.put_if(&state, &bytes, Secrecy::Public, last.get()) {
            Ok(rev) => {
                last.set(Expect::Rev(rev));
                Ok(())
            }
            Err(e) if e.is_conflict() => Err(anyhow::anyhow!(
                "{}: another controller synced {domain} at the same time; run sync-linode again (it adopts what \
                 the other made)",
                place()
            )),
            Err(e) => Err(e.into()),
        }
    };
    let existing = api.domain_records(found.id).await?;
    let mut changes = Vec::new();
    // Records lct made that are gone at Linode (deleted by hand) are forgotten.
    let ids: BTreeSet<u64> = existing.iter().map(|r| r.id).collect();
    owned.records.retain(|id| ids.contains(id));
    // Adopt records that already say exactly what is wanted.
    let mut owned_keys: BTreeSet<Key> = existing.iter().filter(|r| owned.records.contains(&r.id)).map(key_of).collect();
    for r in &existing {
        let key = key_of(r);
        if !owned.records.contains(&r.id) && want.contains_key(&key) && owned_keys.insert(key.clone()) {
            owned.records.insert(r.id);
            changes.push(change("adopt", &key, r.ttl_sec, Some(r.id)));
        }
    }
    let mine: Vec<&DomainRecord> = existing.iter().filter(|r| owned.records.contains(&r.id)).collect();
    let have: BTreeSet<Key> = mine.iter().map(|r| key_of(r)).collect();
    // Stale records of lct's: reused for a wanted record of the same name and type, else deleted.
    let mut stale: Vec<&DomainRecord> = mine.iter().filter(|r| !want.contains_key(&key_of(r))).copied().collect();
    for (key, ttl) in want {
        if have.contains(key) {
            let r = mine.iter().find(|r| key_of(r) == *key).expect("in have");
            if r.ttl_sec != *ttl {
                if !dry_run {
                    api.update_domain_record(found.id, r.id, &json!({ "ttl_sec": ttl })).await?;
                }
                changes.push(change("update", key, *ttl, Some(r.id)));
            }
            continue;
        }
        if let Some(at) = stale.iter().position(|r| r.name.eq_ignore_ascii_case(&key.0) && r.record_type == key.1) {
            let r = stale.remove(at);
            if !dry_run {
                api.update_domain_record(found.id, r.id, &json!({ "target": key.2, "ttl_sec": ttl })).await?;
            }
            changes.push(change("update", key, *ttl, Some(r.id)));
            continue;
        }
        let id = if dry_run {
            None
        } else {
            let body = json!({ "type": key.1, "name": key.0, "target": key.2, "ttl_sec": ttl });
            let made = api.create_domain_record(found.id, &body).await?;
            owned.records.insert(made.id);
            save(&owned)?;
            Some(made.id)
        };
        changes.push(change("create", key, *ttl, id));
    }
    for r in stale {
        if !dry_run {
            api.delete_domain_record(found.id, r.id).await?;
            owned.records.remove(&r.id);
            save(&owned)?;
        }
        changes.push(change("delete", &key_of(r), r.ttl_sec, Some(r.id)));
    }
    save(&owned)?;
    Ok(changes)
}
