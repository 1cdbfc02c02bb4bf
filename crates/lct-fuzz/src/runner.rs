//! Runs a target: first every input of its corpus as it is (the seeds and the regressions of
//! crashes found before), then mutations of them for a number of runs or a time. An input
//! that reaches an outcome not seen before joins the inputs mutated from (a stand-in for
//! coverage feedback). An input that panics, takes more than the memory budget, or runs
//! too long is a finding, saved to the corpus directory (`panic-…`, `memory-…`, `slow-…`)
//! when asked; one that would take all memory or hang is saved before the process aborts
//! (`abort-last`).

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::memory;
use crate::mutate::{Rng, mutate};
use crate::targets::Target;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop after this many mutated inputs...
    pub runs: Option<u64>,
    /// ...or after this long (whichever comes first; neither: the corpus only).
    pub time: Option<Duration>,
    pub seed: u64,
    /// The corpora: DIR/TARGET/ holds each target's inputs.
    pub corpus: PathBuf,
    /// Save the inputs of findings to DIR/TARGET/.
    pub save: bool,
    /// The longest input made.
    pub max_len: usize,
    /// The most one input may take in memory above what was live before it.
    pub memory_budget: usize,
    /// The longest one input may take.
    pub slow: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: None,
            time: None,
            seed: 1,
            corpus: PathBuf::from("tests/fuzz/corpus"),
            save: false,
            max_len: 64 << 10,
            memory_budget: 64 << 20,
            slow: Duration::from_secs(2),
        }
    }
}

/// An input that failed.
#[derive(Debug, Clone)]
pub struct Finding {
    /// panic, memory or slow.
    pub kind: &'static str,
    pub detail: String,
    pub input: Vec<u8>,
    pub saved: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub target: &'static str,
    pub seed: u64,
    /// Inputs of the corpus run as they are, and mutated inputs run.
    pub corpus: usize,
    pub runs: u64,
    pub elapsed: Duration,
    /// Distinct outcomes seen, and inputs kept for reaching a new one.
    pub outcomes: usize,
    pub kept: usize,
    /// The most one input took in memory (bytes above what was live before it).
    pub peak_memory: usize,
    pub slowest: Duration,
    pub findings: Vec<Finding>,
}

/// The most inputs kept to mutate from.
const POOL: usize = 2048;
/// An input still running after this long is a hang: it is saved and the process aborts.
const HANG: Duration = Duration::from_secs(30);

/// The inputs of `dir` (sorted by name, so runs are reproducible); none if it does not exist.
pub fn corpus_of(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut inputs = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(inputs),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && !name.starts_with('.') {
            inputs.push((name, std::fs::read(entry.path())?));
        }
    }
    inputs.sort();
    Ok(inputs)
}

/// Runs `target` as `options` say.
pub fn run(target: &Target, options: &Options) -> std::io::Result<Summary> {
    let dir = options.corpus.join(target.name);
    let corpus = corpus_of(&dir)?;
    if options.save {
        std::fs::create_dir_all(&dir)?;
    }
    let last_words = CString::new(dir.join("abort-last").into_os_string().into_encoded_bytes())
        .map_err(|_| std::io::Error::other("a corpus path with a NUL byte"))?;
    let _quiet = QuietPanics::install();
    watchdog();
    let mut summary = Summary {
        target: target.name,
        seed: options.seed,
        corpus: corpus.len(),
        runs: 0,
        elapsed: Duration::ZERO,
        outcomes: 0,
        kept: 0,
        peak_memory: 0,
        slowest: Duration::ZERO,
        findings: Vec::new(),
    };
    let mut seen = HashSet::new();
    let mut reported = HashSet::new();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let started = Instant::now();
    let mut check = |input: Vec<u8>, summary: &mut Summary, pool: &mut Vec<Vec<u8>>| -> std::io::Result<()> {
        memory::arm(&input, &last_words);
        let result = run_one(target, &input, options);
        memory::disarm();
        summary.peak_memory = summary.peak_memory.max(result.memory);
        summary.slowest = summary.slowest.max(result.took);
        match result.failure {
            None => {
                if seen.insert(result.outcome) && pool.len() < POOL {
                    pool.push(input);
                    summary.kept += 1;
                }
            }
            Some((kind, detail)) => {
                // One finding per panic's place and message; one of memory and one of time
                // per run (their details are only numbers).
                let key = if kind == "panic" { detail.clone() } else { String::new() };
                if reported.insert((kind, key)) {
                    let saved = if options.save { Some(save(&dir, kind, &input)?) } else { None };
                    summary.findings.push(Finding { kind, detail, input, saved });
                }
            }
        }
        Ok(())
    };
    for (_, input) in &corpus {
        check(input.clone(), &mut summary, &mut pool)?;
    }
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    // Half the inputs are mutated from the corpus itself: well-formed inputs reach deeper
    // than the mutants of mutants that pile up in the pool.
    let from_corpus = pool.len();
    let mut rng = Rng::new(options.seed);
    let deadline = options.time.map(|t| started + t);
    let wanted = options.runs.unwrap_or(if deadline.is_some() { u64::MAX } else { 0 });
    while summary.runs < wanted && deadline.is_none_or(|d| Instant::now() < d) {
        let base = if rng.below(2) == 0 { rng.below(from_corpus) } else { rng.below(pool.len()) };
        let mut input = pool[base].clone();
        let other = &pool[rng.below(pool.len())];
        mutate(&mut rng, &mut input, other, options.max_len);
        summary.runs += 1;
        check(input, &mut summary, &mut pool)?;
    }
    summary.elapsed = started.elapsed();
    summary.outcomes = seen.len();
    Ok(summary)
}

struct RunResult {
    outcome: u64,
    memory: usize,
    took: Duration,
    failure: Option<(&'static str, String)>,
}

fn run_one(target: &Target, input: &[u8], options: &Options) -> RunResult {
    let base = memory::reset_peak();
    let start = Instant::now();
    RUNNING_SINCE.store(now_ms().max(1), Ordering::SeqCst);
    let result = std::panic::catch_unwind(|| (target.run)(input));
    RUNNING_SINCE.store(0, Ordering::SeqCst);
    let took = start.elapsed();
    let memory = memory::peak().saturating_sub(base);
    let (outcome, mut failure) = match result {
        Ok(outcome) => (outcome, None),
        Err(_) => {
            let message = PANIC.lock().expect("not poisoned").take().unwrap_or_else(|| "a panic".into());
            (0, Some(("panic", message)))
        }
    };
    if failure.is_none() && memory::installed() && memory > options.memory_budget {
        failure =
            Some(("memory", format!("took {} MiB (the budget is {} MiB)", memory >> 20, options.memory_budget >> 20)));
    }
    if failure.is_none() && took > options.slow {
        failure = Some((
            "slow",
            format!("took {:.1} s (the limit is {:.1} s)", took.as_secs_f64(), options.slow.as_secs_f64()),
        ));
    }
    RunResult { outcome, memory, took, failure }
}

/// Writes a finding's input to DIR/KIND-HASH; returns the path.
fn save(dir: &Path, kind: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut hasher);
    let path = dir.join(format!("{kind}-{:016x}", hasher.finish()));
    std::fs::write(&path, input)?;
    Ok(path)
}

/// The last panic's message and place (the hook keeps it instead of printing it).
static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// While alive, panics are recorded, not printed (the runner reports them once each).
struct QuietPanics(Option<PanicHook>);

/// What `std::panic::take_hook` returns.
type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

impl QuietPanics {
    fn install() -> QuietPanics {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            *PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{place}: {message}"));
        }));
        QuietPanics(Some(previous))
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            std::panic::set_hook(previous);
        }
    }
}

/// When the running input started (ms since the harness's start), 0 between inputs.
static RUNNING_SINCE: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A thread that saves the running input and aborts if it runs past [`HANG`] (a loop that
/// never ends cannot be caught otherwise).
fn watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        now_ms();
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let since = RUNNING_SINCE.load(Ordering::SeqCst);
                if since != 0 && now_ms().saturating_sub(since) > HANG.as_millis() as u64 {
                    memory::die(b"lct-fuzz: an input ran for 30 s (a hang)\n");
                }
            }
        });
    });
}

/// Counts of findings by kind, for a summary line.
pub fn kinds(findings: &[Finding]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.kind).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A planted bug: a panic when the input starts with a byte over 0xf0.
    fn planted(bytes: &[u8]) -> u64 {
        if bytes.first().is_some_and(|b| *b > 0xf0) {
            panic!("planted at {}", bytes[0] > 0);
        }
        bytes.len() as u64
    }

    /// The runner finds a bug the mutations reach from the corpus, saves its input once,
    /// and is the same for the same seed.
    #[test]
    fn a_planted_bug_is_found_saved_and_found_again_with_the_same_seed() {
        let dir = tempfile_dir();
        std::fs::create_dir_all(dir.join("planted")).unwrap();
        std::fs::write(dir.join("planted/seed-a"), b"\x10 a seed").unwrap();
        let target = Target { name: "planted", about: "", run: planted };
        let options = Options { runs: Some(5000), seed: 9, corpus: dir.clone(), save: true, ..Default::default() };
        let first = run(&target, &options).unwrap();
        assert_eq!(first.findings.len(), 1, "{:?}", first.findings);
        let finding = &first.findings[0];
        assert_eq!(finding.kind, "panic");
        assert!(
            finding.detail.contains("runner.rs") && finding.detail.contains("planted at true"),
            "{}",
            finding.detail
        );
        assert_eq!(std::fs::read(finding.saved.as_ref().unwrap()).unwrap(), finding.input);
        let again = run(&target, &Options { save: false, ..options }).unwrap();
        // (The saved input is in the corpus now: found at once, as a regression.)
        assert_eq!(again.findings[0].input, finding.input);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        // A new private directory (kept: the test removes it), named from lct's one source.
        lct_core::fsutil::temp_dir("lct-fuzz-test-").unwrap().keep()
    }
}
