use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};

/// Authoritative DNS for lct clusters: zones from the inventory, split-horizon views, live updates.
///
/// The embedded authoritative DNS server (hickory) is built in its own issue; this build has the command skeleton only.
#[derive(Parser)]
#[command(
    name = "lct-dns",
    version,
    after_help = "Examples:\n  lct-dns completions bash > /etc/bash_completion.d/lct-dns\n  lct-dns man --dir /usr/local/share/man/man1\n\nExit status: 0 success, 1 failure, 2 usage error."
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
    lct_core::cli::run("lct-dns", || match &cli.command {
        Command::Meta(meta) => meta.run::<Cli>(),
    })
}
