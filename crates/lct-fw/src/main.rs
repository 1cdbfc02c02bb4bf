use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};

/// Host firewalls for lct clusters: nftables (iptables fallback) rules that follow membership.
///
/// The nftables and iptables backends are built in their own issue; this build has the command skeleton only.
#[derive(Parser)]
#[command(
    name = "lct-fw",
    version,
    after_help = "Examples:\n  lct-fw completions bash > /etc/bash_completion.d/lct-fw\n  lct-fw man --dir /usr/local/share/man/man1\n\nExit status: 0 success, 1 failure, 2 usage error."
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
    lct_core::cli::run("lct-fw", || match &cli.command {
        Command::Meta(meta) => meta.run::<Cli>(),
    })
}
