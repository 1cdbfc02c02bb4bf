//! `lct-image`: disk images on the command line (arguments and output only).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat};
use lct_image::{CreateOptions, RestoreOptions};

const EXAMPLES: &str = "\
Examples:
  lct-image create /dev/loop3 base.lcti --label debian-12     # a disk (or a file) into an image
  lct-image restore base.lcti /dev/disk/by-id/scsi-0Linode_Volume_data-1
  lct-image restore base.lcti disk.raw --skip-matching       # resume: writes only what differs
  lct-image verify base.lcti                                 # every extent checked
  lct-image verify base.lcti /dev/loop4                      # the target holds the image
  lct-image info base.lcti
  zstd -dc base.lcti > disk.raw                              # plain zstd restores the raw disk

An image is the disk in 4 MiB extents, each an independent zstd frame (all-zero extents as
tiny frames), then an index with a BLAKE3 hash per extent and zstd's seek table: see
docs/image-format.md.

Exit status: 0 success, 1 failure (a damaged image or target names its first bad extent),
2 usage error.";

/// Disk images: made from disks and volumes, verified, and streamed back onto them.
#[derive(Parser)]
#[command(name = "lct-image", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Image a block device or a disk file (sparse-aware, every core, bounded memory)
    Create {
        source: PathBuf,
        out: PathBuf,
        #[arg(long, default_value = "")]
        label: String,
        /// zstd's compression level
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
        /// Image a block device even while it is mounted read-write
        #[arg(long)]
        force: bool,
    },
    /// Write an image onto a file or block device (hashes checked before writing)
    Restore {
        image: PathBuf,
        target: PathBuf,
        /// Read the target first and write only the extents that differ (resumes a restore)
        #[arg(long)]
        skip_matching: bool,
        /// Write onto a block device even while it is mounted
        #[arg(long)]
        force: bool,
    },
    /// Check an image, or that a target holds it; the first bad extent is named
    Verify { image: PathBuf, target: Option<PathBuf> },
    /// An image's manifest and extents
    Info { image: PathBuf },
    #[command(flatten)]
    Meta(MetaCommand),
}

/// A bar on a terminal (cron and pipes see none).
fn bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bytes}}/{{total_bytes}} [{{elapsed}}, {{bytes_per_sec}}] {{wide_bar}}"
        ))
        .expect("a valid template"),
    );
    bar
}

fn emit(report: &lct_image::Report, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Jsonl => println!("{}", serde_json::to_string(report)?),
        OutputFormat::Table => {
            let ratio = report.image_bytes as f64 / report.size.max(1) as f64;
            println!(
                "{}: {} bytes in {} extents ({} data, {} zero{}), image {} bytes ({:.1}%), root {}",
                report.target.as_deref().unwrap_or(&report.image),
                report.size,
                report.extents,
                report.data_extents,
                report.zero_extents,
                if report.skipped > 0 { format!(", {} already there", report.skipped) } else { String::new() },
                report.image_bytes,
                ratio * 100.0,
                &report.root[..16]
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-image", || match &cli.command {
        Command::Create { source, out, label, level, force } => {
            let bar = bar("imaging");
            let options = CreateOptions { label: label.clone(), level: *level, force: *force, ..Default::default() };
            let report = lct_image::create(source, out, &options, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            emit(&report, cli.global.output())
        }
        Command::Restore { image, target, skip_matching, force } => {
            let bar = bar("restoring");
            let options = RestoreOptions { skip_matching: *skip_matching, force: *force, ..Default::default() };
            let report = lct_image::restore(image, target, &options, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            emit(&report, cli.global.output())
        }
        Command::Verify { image, target } => {
            let bar = bar("verifying");
            let report = lct_image::verify(image, target.as_deref(), lct_image::image::threads(), &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            emit(&report, cli.global.output())
        }
        Command::Info { image } => {
            let index = lct_image::index(image)?;
            println!("{}", serde_json::to_string_pretty(&index.manifest)?);
            let data = index.extents.iter().filter(|e| e.kind == lct_image::format::Kind::Data).count();
            println!(
                "{} extents ({data} data, {} zero), root {}",
                index.extents.len(),
                index.extents.len() - data,
                lct_image::format::hex(&index.root)
            );
            Ok(())
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
