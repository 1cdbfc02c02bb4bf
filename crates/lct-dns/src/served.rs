//! What is being served: the records and the answer tables made of them, with the settings
//! they are served under; kept in the state directory after a change.

use std::sync::Arc;

use crate::fast::Answers;
use crate::journal::Change;
use crate::settings::Settings;
use crate::zone::DnsRecord;

/// What is being served: the records and the answer tables made of them.
pub struct Served {
    /// Shared: a secondary serves a transferred zone's tables first and its records' text
    /// a moment later, without copying the other zones' records in between.
    pub records: Arc<Vec<DnsRecord>>,
    pub answers: Arc<Answers>,
    pub settings: Arc<Settings>,
    /// A zone whose new tables serve while its records' text is still being made (a
    /// secondary's full transfer): not transferred onwards until the text is in.
    pub settling: Option<String>,
    /// Each zone's SOA serial, found once per version when first asked
    /// ([`Served::zone_serials`]): a scrape reads them, it does not walk the records.
    pub zone_serials: std::sync::OnceLock<Vec<(String, u32)>>,
}

impl Served {
    pub fn build(records: Vec<DnsRecord>, settings: Arc<Settings>) -> anyhow::Result<Served> {
        let answers = Served::answers(&records, &settings)?;
        Ok(Served::of(records, answers, settings))
    }

    /// A version of `records` whose tables are `answers`, settled.
    fn of(records: Vec<DnsRecord>, answers: Answers, settings: Arc<Settings>) -> Served {
        Served {
            records: Arc::new(records),
            answers: Arc::new(answers),
            settings,
            settling: None,
            zone_serials: Default::default(),
        }
    }

    /// The version after `change` to `zone` (now `records`): `previous`'s tables patched
    /// where the change allows it ([`crate::patch`]: the names it touches built again, the
    /// rest shared; then signed, the signer keeping the names it signed before as they are
    /// where the change leaves them), else built whole.
    pub fn patched(
        previous: &Answers,
        records: Vec<DnsRecord>,
        zone: &str,
        change: &Change,
        settings: Arc<Settings>,
    ) -> anyhow::Result<Served> {
        let modes = |z: &str| crate::mode::mode_of(&settings.modes, z);
        let answers = match Answers::patched(previous, &records, zone, change, &modes) {
            Some(answers) => {
                let mut answers = answers?;
                settings.dnssec.sign(&mut answers)?;
                Served::with_expiry(answers, &settings)
            }
            None => Served::answers(&records, &settings)?,
        };
        Ok(Served::of(records, answers, settings))
    }

    /// [`Served::build`] and [`Served::persist`] at once, on two cores: the file's text is
    /// made while the tables are built, and written only once they are (a zone that cannot
    /// be served is not kept).
    pub fn build_and_persist(records: Vec<DnsRecord>, settings: Arc<Settings>) -> anyhow::Result<Served> {
        let (answers, text) = std::thread::scope(|scope| {
            let text = scope.spawn(|| records_text(&records));
            (Served::answers(&records, &settings), text.join().expect("writing JSON does not panic"))
        });
        let served = Served {
            records: Arc::new(records),
            answers: Arc::new(answers?),
            settings,
            settling: None,
            zone_serials: Default::default(),
        };
        served.keep(&text?)?;
        Ok(served)
    }

    fn answers(records: &[DnsRecord], settings: &Settings) -> anyhow::Result<Answers> {
        let mut answers = Answers::new(records, &|zone| crate::mode::mode_of(&settings.modes, zone))?;
        settings.dnssec.sign(&mut answers)?;
        Ok(Served::with_expiry(answers, settings))
    }

    /// `answers` with the secondary zones whose copy expired marked (SERVFAIL).
    pub fn with_expiry(mut answers: Answers, settings: &Settings) -> Answers {
        answers.expire(settings.expired.lock().expect("not poisoned").iter().map(String::as_str));
        answers
    }

    /// Each zone's SOA serial (zones with an SOA), by zone name: one walk of the records
    /// per version, on the first call.
    pub fn zone_serials(&self) -> &[(String, u32)] {
        self.zone_serials.get_or_init(|| {
            let mut serials: Vec<(String, u32)> = self
                .records
                .iter()
                .filter(|r| r.rtype == crate::zone::RecordType::SOA)
                .filter_map(|r| Some((r.zone.clone(), crate::wire::soa_serial(&r.data)?)))
                .collect();
            // The first SOA of a zone counts (as `serial_of` reads it).
            serials.sort_by(|a, b| a.0.cmp(&b.0));
            serials.dedup_by(|later, first| later.0 == first.0);
            serials
        })
    }

    /// Whether a client at `ip` is in an `internal` prefix (this server's own region).
    pub fn is_internal(&self, ip: std::net::IpAddr) -> bool {
        self.settings.prefixes.iter().any(|p| p.contains(ip))
    }

    /// The tables a client at `ip` is answered from, and whether as an inside view (true:
    /// the internal view, or its region's): on a `public` listen address the external
    /// view whatever the source says (a forged private or mesh source gets nothing more);
    /// else a region's client (by its mesh address) its region's view, a client in an
    /// `internal` prefix this server's own region's, anyone else the external view.
    /// No allocation: a binary search and a scan of the internal prefixes.
    pub fn view(&self, ip: std::net::IpAddr, public: bool) -> (&Answers, bool) {
        if public {
            return (&self.answers, false);
        }
        if let Some(region) = self.settings.regions.view_of(ip) {
            return (&region.answers, true);
        }
        (&self.answers, self.is_internal(ip))
    }

    /// Keeps the zones in the state directory (atomically: the old file or the new one).
    pub fn persist(&self) -> anyhow::Result<()> {
        self.keep(&records_text(&self.records)?)
    }

    fn keep(&self, text: &[u8]) -> anyhow::Result<()> {
        let path = &self.settings.state_file;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        }
        lct_core::fsutil::atomic_write(path, text, 0o640).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// Records as the state file holds them: JSON lines.
fn records_text(records: &[DnsRecord]) -> anyhow::Result<Vec<u8>> {
    let mut text = Vec::with_capacity(records.len() * 120);
    {
        let mut w = lct_core::stream::Writer::new(&mut text);
        for r in records {
            w.write(r)?;
        }
        w.flush()?;
    }
    Ok(text)
}
