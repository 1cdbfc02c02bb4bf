//! lct-fuzz: runs the readers of untrusted input on mutated inputs (see the library).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Our own counting allocator: each input's memory, and a hard limit that saves the input.
#[global_allocator]
static ALLOCATOR: lct_fuzz::memory::Counting = lct_fuzz::memory::Counting;

/// Fuzzes lct's readers of untrusted input (image indexes and streams, DNS messages, plans):
/// each target runs its corpus (tests/fuzz/corpus/TARGET/), then inputs mutated from it, for
/// --runs inputs or --seconds. A panic, an input over the memory budget or a slow one is a
/// finding (exit 1), saved to the corpus directory with --save. An input that would take
/// more than --hard-limit MiB, or hangs, is saved as abort-last before the process aborts.
#[derive(Parser)]
#[command(name = "lct-fuzz", version)]
struct Cli {
    /// Targets to run (all by default; --list names them).
    targets: Vec<String>,
    /// Mutated inputs per target.
    #[arg(long)]
    runs: Option<u64>,
    /// Seconds per target (with --runs: whichever ends first).
    #[arg(long)]
    seconds: Option<f64>,
    /// The mutator's seed (random by default; the summary names it to replay a run).
    #[arg(long)]
    seed: Option<u64>,
    /// The corpora's directory (one directory per target).
    #[arg(long, default_value = "tests/fuzz/corpus")]
    corpus: PathBuf,
    /// Save the inputs of findings to the corpus directory.
    #[arg(long)]
    save: bool,
    /// The most one input may take in memory, MiB.
    #[arg(long, default_value_t = 64)]
    memory_budget: usize,
    /// Past this many MiB live the input is saved and the process aborts.
    #[arg(long, default_value_t = 1024)]
    hard_limit: usize,
    /// List the targets and what they read.
    #[arg(long)]
    list: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    lct_core::cli::run("lct-fuzz", || {
        if cli.list {
            for t in lct_fuzz::TARGETS {
                println!("{}: {}", t.name, t.about);
            }
            return Ok(());
        }
        let targets: Vec<&lct_fuzz::Target> = if cli.targets.is_empty() {
            lct_fuzz::TARGETS.iter().collect()
        } else {
            cli.targets
                .iter()
                .map(|n| {
                    lct_fuzz::targets::by_name(n).ok_or_else(|| anyhow::anyhow!("no target {n:?} (--list names them)"))
                })
                .collect::<anyhow::Result<_>>()?
        };
        let seed = match cli.seed {
            Some(seed) => seed,
            None => lct_core::random::u64()?,
        };
        lct_fuzz::memory::set_hard_limit(cli.hard_limit << 20);
        let options = lct_fuzz::Options {
            runs: cli.runs,
            time: cli.seconds.map(Duration::from_secs_f64),
            seed,
            corpus: cli.corpus.clone(),
            save: cli.save,
            memory_budget: cli.memory_budget << 20,
            ..Default::default()
        };
        let mut failed = 0;
        for target in targets {
            let s = lct_fuzz::run(target, &options)?;
            println!(
                "{}: {} corpus inputs and {} mutated in {:.1} s (seed {}): {} outcomes, {} inputs kept, \
                 peak {} KiB, slowest {} ms, {} findings",
                s.target,
                s.corpus,
                s.runs,
                s.elapsed.as_secs_f64(),
                s.seed,
                s.outcomes,
                s.kept,
                s.peak_memory >> 10,
                s.slowest.as_millis(),
                s.findings.len()
            );
            for f in &s.findings {
                let saved = f.saved.as_ref().map(|p| format!(" (saved to {})", p.display())).unwrap_or_default();
                println!("  {} {}: {}{saved}", s.target, f.kind, f.detail);
                if f.saved.is_none() {
                    println!("    input ({} bytes): {}", f.input.len(), hex(&f.input[..f.input.len().min(256)]));
                }
            }
            failed += s.findings.len();
        }
        if failed > 0 {
            anyhow::bail!("{failed} findings");
        }
        Ok(())
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
