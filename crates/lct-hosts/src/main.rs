use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};

/// /etc/hosts for lct clusters: render and apply managed blocks, in step with membership.
///
/// Rendering and applying hosts files are built in their own issue; this build has the command skeleton only.
#[derive(Parser)]
#[command(
    name = "lct-hosts",
    version,
    after_help = "Examples:\n  lct-hosts completions bash > /etc/bash_completion.d/lct-hosts\n  lct-hosts man --dir /usr/local/share/man/man1\n\nExit status: 0 success, 1 failure, 2 usage error."
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
    lct_core::cli::run("lct-hosts", || match &cli.command {
        Command::Meta(meta) => meta.run::<Cli>(),
    })
}
