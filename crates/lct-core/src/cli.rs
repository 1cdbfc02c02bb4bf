//! Conventions every lct binary follows.
//!
//! * `--output table|jsonl`: human tables on a terminal, JSON lines otherwise.
//! * Logs go to stderr only; `-v`/`-vv`/`-vvv` for more, `-q`/`-qq` for less; `NO_COLOR`
//!   (or a non-terminal stderr) turns colour off.
//! * Exit status: 0 success, 1 failure, 2 usage error.
//! * `completions SHELL` and `man [--dir DIR]` are generated from the clap definitions.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory};
use tracing_subscriber::filter::LevelFilter;

/// Process exit statuses shared by every tool.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
}

pub use crate::table::OutputFormat;

/// Options every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Output format [default: table on a terminal, jsonl otherwise]
    #[arg(long, short = 'o', global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// More log output on stderr (repeat for more)
    #[arg(long, short = 'v', global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less log output on stderr (-qq for none)
    #[arg(long, short = 'q', global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl GlobalArgs {
    /// The output format asked for, or the one that suits stdout.
    pub fn output(&self) -> OutputFormat {
        self.output.unwrap_or_else(
            || {
                if io::stdout().is_terminal() { OutputFormat::Table } else { OutputFormat::Jsonl }
            },
        )
    }

    /// Sets up logging to stderr at the level `-v`/`-q` ask for.
    pub fn init_logging(&self) {
        let level = match (self.verbose, self.quiet) {
            (0, 0) => LevelFilter::WARN,
            (1, _) => LevelFilter::INFO,
            (2, _) => LevelFilter::DEBUG,
            (v, _) if v >= 3 => LevelFilter::TRACE,
            (_, 1) => LevelFilter::ERROR,
            _ => LevelFilter::OFF,
        };
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(io::stderr)
            .with_ansi(color_on_stderr())
            .with_target(false)
            .without_time()
            .try_init();
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
pub fn color_on_stderr() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A mistake in how the tool was called: exits with status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs a binary's body and turns its outcome into the documented exit status. Errors are
/// printed once, on stderr, with their context chain. A closed stdout (`| head`) is not an
/// error.
pub fn run(bin: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            let _ = writeln!(io::stderr(), "{bin}: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::from(exit::FAILURE)
            }
        }
    }
}

/// Runs a binary's async body on one multi-threaded runtime, with [`run`]'s exit statuses:
/// the whole of a main that is async from its first line (`run_async("lct-fw", run(cli))`).
pub fn run_async(bin: &str, body: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    run(bin, || block_on(body))
}

/// Runs one future to its end on a fresh multi-threaded runtime: for a main whose
/// subcommands are mostly synchronous and only some need the runtime.
pub fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(future)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

/// Prints the completion script for `shell` on stdout.
pub fn print_completions<C: CommandFactory>(shell: clap_complete::Shell) -> io::Result<()> {
    let mut cmd = C::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut io::stdout());
    Ok(())
}

/// Prints the man page on stdout, or writes one page per command and subcommand into `dir`
/// (`lct-api.1`, `lct-api-create.1`, ...).
pub fn print_man<C: CommandFactory>(dir: Option<&Path>) -> io::Result<()> {
    let cmd = C::command();
    match dir {
        None => clap_mangen::Man::new(cmd).render(&mut io::stdout()),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let name = cmd.get_name().to_string();
            write_man_pages(cmd, &name, &name, dir)
        }
    }
}

/// One page per command: `page` names the file (`lct-fw-declare`), `invocation` is what a
/// user types (`lct-fw declare`).
fn write_man_pages(cmd: clap::Command, page: &str, invocation: &str, dir: &Path) -> io::Result<()> {
    let name = page;
    let mut cmd = cmd.display_name(page.to_string()).bin_name(invocation.to_string());
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let sub_name = sub.get_name();
        write_man_pages(sub.clone(), &format!("{page}-{sub_name}"), &format!("{invocation} {sub_name}"), dir)?;
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)
}

/// The meta subcommands every binary has, flattened into its own `Command` enum.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MetaCommand {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write all pages into a directory
    Man {
        /// Write NAME.1 for the command and each subcommand into DIR
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

impl MetaCommand {
    pub fn run<C: CommandFactory>(&self) -> anyhow::Result<()> {
        match self {
            MetaCommand::Completions { shell } => print_completions::<C>(*shell)?,
            MetaCommand::Man { dir } => print_man::<C>(dir.as_deref())?,
        }
        Ok(())
    }
}
