//! The server's counters, as Knot's stats module and BIND's statistics channel keep them:
//! queries by view, type and rcode, RRL drops and slips, TCP connections, transfers and
//! NOTIFYs. Off unless a statistics listener is configured ([`enable`]).
//!
//! The answer path pays nothing it can feel: each UDP thread counts into a block of its own
//! ([`Stats::worker`], cache-line aligned so no two threads write one line), with a relaxed
//! load and store (one writer: no locked instruction), and the blocks are summed only when
//! someone reads them ([`Stats::snapshot`]). The rarer events (the runtime's answers, TCP,
//! transfers, NOTIFY) count with relaxed atomic adds into one shared block.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

/// Query types counted by name; the rest are "other".
pub const QTYPES: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (43, "DS"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (50, "NSEC3"),
    (51, "NSEC3PARAM"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (251, "IXFR"),
    (252, "AXFR"),
    (255, "ANY"),
    (257, "CAA"),
];
/// The index of "other" among the types.
const OTHER_TYPE: usize = QTYPES.len();
const TYPES: usize = QTYPES.len() + 1;

/// Response codes counted by name (header rcode); the rest are "other".
pub const RCODES: &[(u8, &str)] =
    &[(0, "NOERROR"), (1, "FORMERR"), (2, "SERVFAIL"), (3, "NXDOMAIN"), (4, "NOTIMP"), (5, "REFUSED"), (9, "NOTAUTH")];
const OTHER_RCODE: usize = RCODES.len();
const CODES: usize = RCODES.len() + 1;

/// Views: 0 external, 1 internal (as the answer tables' keys).
pub const VIEWS: [&str; 2] = ["external", "internal"];
const CELLS: usize = 2 * TYPES * CODES;

/// The index of a query type among [`QTYPES`] ("other" last): a jump table, not a search
/// (a unit test holds the two lists together).
#[inline]
pub fn type_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        2 => 1,
        5 => 2,
        6 => 3,
        12 => 4,
        15 => 5,
        16 => 6,
        28 => 7,
        33 => 8,
        43 => 9,
        46 => 10,
        47 => 11,
        48 => 12,
        50 => 13,
        51 => 14,
        64 => 15,
        65 => 16,
        251 => 17,
        252 => 18,
        255 => 19,
        257 => 20,
        _ => OTHER_TYPE,
    }
}

/// The index of a response code among [`RCODES`] ("other" last).
#[inline]
pub fn rcode_index(rcode: u8) -> usize {
    match rcode {
        0..=5 => rcode as usize,
        9 => 6,
        _ => OTHER_RCODE,
    }
}

fn cell(internal: bool, qtype: u16, rcode: u8) -> usize {
    (internal as usize * TYPES + type_index(qtype)) * CODES + rcode_index(rcode)
}

/// One thread's counters (or the shared ones), on cache lines of their own.
#[repr(align(128))]
pub struct Block {
    queries: [AtomicU64; CELLS],
    rrl_drops: AtomicU64,
    rrl_slips: AtomicU64,
}

impl Block {
    fn new() -> Block {
        Block {
            queries: std::array::from_fn(|_| AtomicU64::new(0)),
            rrl_drops: AtomicU64::new(0),
            rrl_slips: AtomicU64::new(0),
        }
    }

    /// Counts an answer, from the one thread that owns this block: a relaxed load and store,
    /// no locked instruction (readers see a recent value, which is all a counter needs).
    #[inline]
    pub fn answered(&self, internal: bool, qtype: u16, rcode: u8) {
        bump_owned(&self.queries[cell(internal, qtype, rcode)]);
    }

    /// An answer the rate limit dropped (owning thread only).
    #[inline]
    pub fn rrl_dropped(&self) {
        bump_owned(&self.rrl_drops);
    }

    /// An answer the rate limit sent truncated (owning thread only).
    #[inline]
    pub fn rrl_slipped(&self) {
        bump_owned(&self.rrl_slips);
    }
}

#[inline]
fn bump_owned(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

/// Events off the answer path, counted by any thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    TcpAccepted,
    TcpClosed,
    /// A connection closed at once: every other one was mid-query.
    TcpRefused,
    /// An idle connection closed to make room for a new one.
    TcpEvicted,
    AxfrOut,
    IxfrOut,
    AxfrIn,
    IxfrIn,
    /// A refresh of a secondary zone that failed (the primary unreachable, a bad answer).
    TransferInFailed,
    NotifySent,
    /// A NOTIFY that no answer came to after every try.
    NotifyUnanswered,
    NotifyReceived,
    /// A NOTIFY refused: not signed with a primary's key for its zone.
    NotifyRefused,
    /// A transferred version of a signed zone refused: it did not validate.
    ValidationRefused,
    /// A scrape of the statistics listener turned away (too many at once, too slow, too big).
    ScrapeRefused,
}

/// The secondary zones whose last transferred version was refused by validation, with
/// that version's serial (kept whether or not counting is on: `lct-dns stats` shows it).
static REFUSED: Mutex<std::collections::BTreeMap<String, u32>> = Mutex::new(std::collections::BTreeMap::new());

/// `zone`'s last transferred version: refused (its serial), or served (`None`).
pub fn zone_refused(zone: &str, serial: Option<u32>) {
    let mut refused = REFUSED.lock().expect("not poisoned");
    match serial {
        Some(serial) => refused.insert(zone.to_string(), serial),
        None => refused.remove(zone),
    };
}

/// The serial of `zone`'s last version refused by validation, if its last one was.
pub fn refused_serial(zone: &str) -> Option<u32> {
    REFUSED.lock().expect("not poisoned").get(zone).copied()
}

/// How many [`Event`]s there are.
pub const EVENTS: usize = 15;

/// The counters of a running server.
pub struct Stats {
    workers: Mutex<Vec<Arc<Block>>>,
    /// The runtime's answers (TCP, and UDP messages beyond the fast path).
    shared: Block,
    events: [AtomicU64; EVENTS],
    started: std::time::Instant,
}

static STATS: OnceLock<Stats> = OnceLock::new();

/// Turns counting on for this process (the statistics listener does, at start).
pub fn enable() -> &'static Stats {
    STATS.get_or_init(Stats::new)
}

/// The counters, when counting is on.
#[inline]
pub fn get() -> Option<&'static Stats> {
    STATS.get()
}

/// Counts `event` when counting is on.
pub fn event(event: Event) {
    if let Some(s) = get() {
        s.events[event as usize].fetch_add(1, Relaxed);
    }
}

/// Counts a response the runtime made (not the UDP fast path) when counting is on: its
/// question's type and its rcode, read off the message; only answers to queries (opcode 0).
pub fn response(internal: bool, message: &[u8]) {
    let Some(s) = get() else { return };
    if message.len() < 12 || (message[2] >> 3) & 0xf != 0 {
        return;
    }
    let rcode = message[3] & 0xf;
    let qtype = question_type(message).unwrap_or(0);
    s.shared.queries[cell(internal, qtype, rcode)].fetch_add(1, Relaxed);
}

/// The first question's type, read off the wire (`None` without a question).
fn question_type(message: &[u8]) -> Option<u16> {
    if u16::from_be_bytes([message[4], message[5]]) == 0 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = *message.get(at)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // a pointer in a question: not ours to follow here
        }
        at += 1 + len;
    }
    Some(u16::from_be_bytes([*message.get(at + 1)?, *message.get(at + 2)?]))
}

/// The counters summed at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// By view (0 external), type index, rcode index.
    pub queries: Vec<u64>,
    pub rrl_drops: u64,
    pub rrl_slips: u64,
    pub events: [u64; EVENTS],
    pub uptime_seconds: u64,
}

impl Snapshot {
    /// Queries of a view, type and rcode (by their numbers).
    pub fn queries(&self, internal: bool, qtype: u16, rcode: u8) -> u64 {
        self.queries[cell(internal, qtype, rcode)]
    }

    pub fn event(&self, event: Event) -> u64 {
        self.events[event as usize]
    }

    /// Every non-zero query count: view, type and rcode names, count.
    pub fn query_counts(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str, u64)> + '_ {
        self.queries.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| {
            let (view, rest) = (i / (TYPES * CODES), i % (TYPES * CODES));
            let (t, c) = (rest / CODES, rest % CODES);
            let qtype = QTYPES.get(t).map_or("other", |(_, name)| name);
            let rcode = RCODES.get(c).map_or("other", |(_, name)| name);
            (VIEWS[view], qtype, rcode, *n)
        })
    }
}

impl Stats {
    fn new() -> Stats {
        Stats {
            workers: Mutex::default(),
            shared: Block::new(),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            started: std::time::Instant::now(),
        }
    }

    /// A block for one UDP thread to count into, alone.
    pub fn worker(&self) -> Arc<Block> {
        let block = Arc::new(Block::new());
        self.workers.lock().expect("not poisoned").push(block.clone());
        block
    }

    /// Every block summed.
    pub fn snapshot(&self) -> Snapshot {
        let workers = self.workers.lock().expect("not poisoned").clone();
        let mut queries = vec![0u64; CELLS];
        let (mut drops, mut slips) = (0, 0);
        for block in workers.iter().map(|b| &**b).chain([&self.shared]) {
            for (sum, c) in queries.iter_mut().zip(&block.queries) {
                *sum += c.load(Relaxed);
            }
            drops += block.rrl_drops.load(Relaxed);
            slips += block.rrl_slips.load(Relaxed);
        }
        Snapshot {
            queries,
            rrl_drops: drops,
            rrl_slips: slips,
            events: std::array::from_fn(|i| self.events[i].load(Relaxed)),
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_cache_line_aligned_and_summed_on_read() {
        assert_eq!(std::mem::align_of::<Block>(), 128);
        assert_eq!(std::mem::size_of::<Block>() % 128, 0);
        let stats = Stats::new();
        let (a, b) = (stats.worker(), stats.worker());
        std::thread::scope(|s| {
            s.spawn(|| (0..1000).for_each(|_| a.answered(true, 1, 0)));
            s.spawn(|| (0..500).for_each(|_| b.answered(true, 1, 0)));
            s.spawn(|| (0..7).for_each(|_| b.rrl_dropped()));
        });
        a.answered(false, 28, 3);
        a.rrl_slipped();
        stats.shared.queries[cell(false, 9999, 200)].fetch_add(2, Relaxed);
        let snap = stats.snapshot();
        assert_eq!(snap.queries(true, 1, 0), 1500);
        assert_eq!(snap.queries(false, 28, 3), 1);
        assert_eq!(snap.queries(false, 28, 0), 0);
        assert_eq!((snap.rrl_drops, snap.rrl_slips), (7, 1));
        let listed: Vec<_> = snap.query_counts().collect();
        assert_eq!(
            listed,
            [
                ("external", "AAAA", "NXDOMAIN", 1),
                ("external", "other", "other", 2),
                ("internal", "A", "NOERROR", 1500)
            ]
        );
    }

    #[test]
    fn the_event_list_is_complete() {
        assert_eq!(Event::NotifyRefused as usize + 3, EVENTS);
        assert_eq!(Event::ScrapeRefused as usize + 1, EVENTS);
    }

    #[test]
    fn a_question_type_is_read_off_any_message_and_odd_ones_are_other() {
        // id, flags, 1 question: "a." type AAAA class IN.
        let m = [0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 28, 0, 1];
        assert_eq!(question_type(&m), Some(28));
        assert_eq!(question_type(&m[..16]), None);
        let mut pointer = m;
        pointer[12] = 0xc0;
        assert_eq!(question_type(&pointer), None);
        assert_eq!(type_index(4242), OTHER_TYPE);
        for (i, (t, _)) in QTYPES.iter().enumerate() {
            assert_eq!(type_index(*t), i, "type {t}");
        }
        for (i, (c, _)) in RCODES.iter().enumerate() {
            assert_eq!(rcode_index(*c), i, "rcode {c}");
        }
        assert_eq!(rcode_index(16), OTHER_RCODE);
    }
}
