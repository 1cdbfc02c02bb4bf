//! `lct-image`: disk images (being built; see the issues).

use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};

/// Disk images for lct: streamed, compressed, onto disks and block volumes.
///
/// Image streaming is built in its own issue; this build has the command skeleton only.
#[derive(Parser)]
#[command(
    name = "lct-image",
    version,
    after_help = "Examples:\n  lct-image completions bash > /etc/bash_completion.d/lct-image\n  lct-image man --dir /usr/local/share/man/man1\n\nExit status: 0 success, 1 failure, 2 usage error."
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
    lct_core::cli::run("lct-image", || match &cli.command {
        Command::Meta(meta) => meta.run::<Cli>(),
    })
}
