//! The journal of recent changes per zone: what IXFR (RFC 1995) sends a secondary that is a
//! few serials behind, kept beside the zones in the state directory after every change (as
//! Knot's journal is), so it reaches across a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::zone::DnsRecord;

/// Where the journal is kept: beside the zones in the state directory.
pub(crate) fn journal_file(state_file: &Path) -> PathBuf {
    state_file.with_extension("journal.json")
}

/// One change of a zone: from one serial to the next, the records taken out and put in
/// (SOA aside).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Change {
    pub from: u32,
    pub to: u32,
    pub removed: Vec<DnsRecord>,
    pub added: Vec<DnsRecord>,
}

/// The last changes of each zone, kept in the state directory after every change (as
/// Knot's journal is), so an IXFR reaches across a restart.
#[derive(Default, serde::Serialize, Deserialize)]
pub struct Journal {
    zones: BTreeMap<String, std::collections::VecDeque<Change>>,
}

/// The steps a zone went through, as the code that changed it knows them.
#[derive(Debug, Clone)]
pub struct Known {
    pub zone: String,
    pub steps: Vec<Change>,
}

/// One zone's journal, oldest change first.
trait Trim {
    /// At most so many changes, and so many records in all (it is written after every
    /// change).
    fn trim(&mut self);
}

impl Trim for std::collections::VecDeque<Change> {
    fn trim(&mut self) {
        let size = |j: &std::collections::VecDeque<Change>| -> usize {
            j.iter().map(|c| c.removed.len() + c.added.len()).sum()
        };
        while self.len() > JOURNAL_CHANGES || (self.len() > 1 && size(self) > JOURNAL_RECORDS) {
            self.pop_front();
        }
    }
}

/// Changes kept per zone, and records (per change, and in all) beyond which a full transfer
/// is as good.
const JOURNAL_CHANGES: usize = 100;
const JOURNAL_RECORDS: usize = 100_000;

impl Journal {
    /// Notes how every zone whose serial differs between `old` and `new` changed; returns
    /// those zones. A zone whose steps are `known` (an update, an incremental transfer) is
    /// recorded as they say; the others are compared whole.
    pub fn record<'a>(&mut self, old: &'a [DnsRecord], new: &'a [DnsRecord], mut known: Option<Known>) -> Vec<String> {
        use crate::wire::serial_of;
        use crate::zone::RecordType;
        let zones: std::collections::BTreeSet<&str> = new.iter().map(|r| r.zone.as_str()).collect();
        let mut changed = Vec::new();
        for zone in zones {
            let (Some(from), Some(to)) = (serial_of(old, zone), serial_of(new, zone)) else { continue };
            if from == to {
                continue;
            }
            changed.push(zone.to_string());
            if let Some(Known { steps, .. }) = known.take_if(|k| k.zone == zone) {
                let journal = self.zones.entry(zone.to_string()).or_default();
                for step in steps {
                    if step.removed.len() + step.added.len() > JOURNAL_RECORDS {
                        journal.clear();
                        continue;
                    }
                    journal.push_back(step);
                }
                journal.trim();
                continue;
            }
            // By reference: a zone of 300,000 records is compared without copying it.
            let of = |records: &'a [DnsRecord]| {
                let mut set = std::collections::HashSet::with_capacity_and_hasher(
                    records.len(),
                    crate::keyed::TableState::default(),
                );
                set.extend(records.iter().filter(|r| r.zone == zone && r.rtype != RecordType::SOA));
                set
            };
            let (before, after) = (of(old), of(new));
            let removed: Vec<DnsRecord> = before.difference(&after).map(|r| (*r).clone()).collect();
            let added: Vec<DnsRecord> = after.difference(&before).map(|r| (*r).clone()).collect();
            let journal = self.zones.entry(zone.to_string()).or_default();
            if removed.len() + added.len() > JOURNAL_RECORDS {
                journal.clear(); // a change this big: a full transfer is no worse
                continue;
            }
            journal.push_back(Change { from, to, removed, added });
            journal.trim();
        }
        changed
    }

    /// The journal kept at `path`, each zone's chain only if it ends at the serial served
    /// now (a records file made afresh starts a new history); empty if there is none.
    pub fn load(path: &Path, records: &[DnsRecord]) -> Journal {
        let Some(mut journal) = std::fs::read(path).ok().and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
        else {
            return Journal::default();
        };
        journal.zones.retain(|zone, changes| {
            let current = crate::wire::serial_of(records, zone);
            changes.back().is_some_and(|c| Some(c.to) == current)
                && changes.iter().zip(changes.iter().skip(1)).all(|(a, b)| a.to == b.from)
        });
        journal
    }

    /// Writes the journal to `path` (atomically: the old one or the new one).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        lct_core::fsutil::atomic_write(path, &serde_json::to_vec(self)?, 0o640)?;
        Ok(())
    }

    /// The chain of changes from `serial` to the zone's latest, if the journal holds it.
    pub fn since(&self, zone: &str, serial: u32) -> Option<Vec<Change>> {
        let journal = self.zones.get(zone)?;
        let start = journal.iter().position(|c| c.from == serial)?;
        let chain: Vec<Change> = journal.iter().skip(start).cloned().collect();
        chain.windows(2).all(|w| w[0].to == w[1].from).then_some(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::RecordType;
    use crate::zone::fixtures::{rec, zone};

    fn with_serial(records: &[DnsRecord], serial: u32) -> Vec<DnsRecord> {
        let mut out = records.to_vec();
        let soa = out.iter_mut().find(|r| r.rtype == RecordType::SOA).unwrap();
        soa.data = format!("ns1.lct.internal. hostmaster.lct.internal. {serial} 3600 600 1209600 300");
        out
    }

    #[test]
    fn the_journal_chains_changes_and_forgets_what_it_cannot_chain() {
        let mut journal = Journal::default();
        let v7 = zone();
        let mut v8 = with_serial(&v7, 8);
        v8.push(rec("b.zk.lct.internal.", RecordType::A, "192.168.128.2"));
        let mut v9 = with_serial(&v8, 9);
        v9.retain(|r| r.data != "203.0.113.1");
        assert_eq!(journal.record(&v7, &v8, None), ["lct.internal."]);
        assert_eq!(journal.record(&v8, &v9, None), ["lct.internal."]);
        assert!(journal.record(&v9, &v9, None).is_empty(), "same serial: no change");
        let chain = journal.since("lct.internal.", 7).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!((chain[0].from, chain[0].to, chain[1].from, chain[1].to), (7, 8, 8, 9));
        assert_eq!(chain[0].added.len(), 1);
        assert!(chain[0].removed.is_empty());
        assert_eq!(chain[1].removed[0].data, "203.0.113.1");
        assert_eq!(journal.since("lct.internal.", 8).unwrap().len(), 1);
        assert!(journal.since("lct.internal.", 6).is_none(), "before the journal: a full transfer");
        assert!(journal.since("other.", 7).is_none());
        // Kept and read back: the chain serves IXFR after a restart while it leads to the
        // serial served; a zone started afresh (another serial) drops it.
        let path = std::env::temp_dir().join(format!("lct-dns-journal-{}.json", lct_core::random::hex(8).unwrap()));
        journal.save(&path).unwrap();
        let back = Journal::load(&path, &v9);
        assert_eq!(back.since("lct.internal.", 7).unwrap().len(), 2);
        let afresh = Journal::load(&path, &with_serial(&v9, 1000));
        assert!(afresh.since("lct.internal.", 7).is_none());
        std::fs::remove_file(&path).unwrap();
    }
}
