//! `lct-plan`: cluster plans (being built; see the issues).

use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};

/// Cluster plans for lct: operations, events, hooks and dependencies.
///
/// Cluster plans are built in their own issue; this build has the command skeleton only.
#[derive(Parser)]
#[command(
    name = "lct-plan",
    version,
    after_help = "Examples:\n  lct-plan completions bash > /etc/bash_completion.d/lct-plan\n  lct-plan man --dir /usr/local/share/man/man1\n\nExit status: 0 success, 1 failure, 2 usage error."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Meta(MetaCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-plan", || match &cli.command {
        Command::Meta(meta) => meta.run::<Cli>(),
    })
}
