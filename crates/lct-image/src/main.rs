//! `lct-image`: disk images on the command line (arguments and output only).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat};
use lct_image::{CreateOptions, RestoreOptions};

const EXAMPLES: &str = "\
Examples:
  lct-image create /dev/loop3 base.lcti --label debian-12     # a disk (or a file) into an image
  lct-image create debian-12-genericcloud-amd64.qcow2 base.lcti   # qcow2, VMDK, ... via qemu-img
  lct-image create https://example.org/disk.raw.xz base.lcti  # .gz, .xz, .zst streams, by URL too
  lct-image restore https://images.example.org/base.lcti /dev/vdb  # Range requests, resumed
  lct-image restore base.lcti /dev/disk/by-id/scsi-0Linode_Volume_data-1
  lct-image restore base.lcti disk.raw --skip-matching       # resume: writes only what differs
  lct-image verify base.lcti                                 # every extent checked
  lct-image send base.lcti | ssh node lct-image restore - /dev/vdb   # streamed, checked there
  ssh node lct-image create /dev/vdb - > node.lcti           # a node's disk imaged over SSH
  lct-image verify base.lcti /dev/loop4                      # the target holds the image
  lct-image info base.lcti
  zstd -dc base.lcti > disk.raw                              # plain zstd restores the raw disk
  lct-image repo init /mnt/images                            # a repository (any disk or volume)
  lct-image repo add /mnt/images base.lcti --name debian-12  # each extent stored once
  lct-image repo add /mnt/images /dev/loop3 --name web-1     # a disk straight in
  lct-image restore /mnt/images::debian-12 /dev/loop4        # REPO::NAME wherever an image goes
  lct-image repo list /mnt/images
  lct-image restore /mnt/images::web-base volume:web-1-data  # a node's volume, any provider
  lct-image repo add /mnt/images volume:web-1-data --name web-1-data   # and back
  lct-image push-linode /mnt/images::debian-12 --label debian-12-lct --region us-east --wait

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
    /// Read images by plain HTTP too (HTTPS only by default: plain HTTP can be changed on
    /// the way, and only the index's hashes would notice)
    #[arg(long, global = true)]
    allow_http: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Image a block device or disk file, a qcow2/VMDK/VHDX/VDI file, a .gz/.xz/.zst raw
    /// disk, or any of these by URL (sparse-aware, every core, bounded memory)
    ///
    /// A qcow2, VMDK, VHDX or VDI file must hold its whole disk: one that names another file
    /// (a backing file, an external data file, an extent in another file, a parent disk) is
    /// refused, naming it, before qemu-img opens it; qemu-img then runs confined (Landlock)
    /// to the image and its output. A format lct does not recognise is read as raw bytes,
    /// never left to qemu's probing.
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
    /// Write an image as a stream for `restore -` elsewhere (its index first, then its data
    /// frames): how an image reaches a node over SSH
    Send { image: PathBuf },
    /// Check an image, or that a target holds it; the first bad extent is named
    Verify { image: PathBuf, target: Option<PathBuf> },
    /// An image's manifest and extents
    Info { image: PathBuf },
    /// A repository of images on any disk or volume, each extent stored once
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Make an image a Linode Image (gzip'd raw through /images/upload, streamed; Linode's
    /// 6 GB raw and 5 GB compressed limits checked before a byte is sent). The token comes
    /// from LINODE_TOKEN (or lct-api's other places), never from the command line.
    PushLinode {
        image: PathBuf,
        #[arg(long)]
        label: String,
        /// A core region with Object Storage (where Linode stores uploads)
        #[arg(long)]
        region: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Wait until Linode says the image is available
        #[arg(long)]
        wait: bool,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Make a repository in a directory (new or empty)
    Init { repo: PathBuf },
    /// Add an image file, or image a disk or file straight in
    Add {
        repo: PathBuf,
        /// An lct image, or a block device or disk file to image
        source: PathBuf,
        #[arg(long)]
        name: String,
        /// The label of an image made from a disk
        #[arg(long, default_value = "")]
        label: String,
        /// Image a block device even while it is mounted read-write
        #[arg(long)]
        force: bool,
    },
    /// The images, their sizes and what they hold
    List { repo: PathBuf },
    /// One image
    Show { repo: PathBuf, name: String },
    /// Remove an image (its extents stay until prune)
    Rm { repo: PathBuf, name: String },
    /// Delete the extents no image uses
    Prune {
        repo: PathBuf,
        /// Count what would go, delete nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every image (or one): each extent there and matching its hash
    Verify { repo: PathBuf, name: Option<String> },
    /// Write an image out as a standalone image file
    Export { repo: PathBuf, name: String, out: PathBuf },
}

/// Progress of long work: a bar on a terminal; elsewhere (cron, systemd, pipes) a JSON line
/// on stderr at most every two seconds (`image-progress`: the step, bytes done and the
/// total, 0 while unknown), so that a log shows how far a long create got.
struct Progress {
    what: &'static str,
    bar: Option<indicatif::ProgressBar>,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Progress {
    fn new(what: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{what} {{bytes}}/{{total_bytes}} [{{elapsed}}, {{bytes_per_sec}}] {{wide_bar}}"
                ))
                .expect("a valid template"),
            );
            bar
        });
        Progress { what, bar, last: std::sync::Mutex::new(None) }
    }

    fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let mut last = self.last.lock().expect("not poisoned");
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(2)) {
            return;
        }
        *last = Some(now);
        // (Written out so that `kind` comes first, as in every record.)
        eprintln!(r#"{{"kind":"image-progress","v":1,"step":"{}","done":{done},"total":{total}}}"#, self.what);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
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
            let bar = Progress::new("imaging");
            let options = CreateOptions {
                label: label.clone(),
                level: *level,
                force: *force,
                allow_http: cli.allow_http,
                ..Default::default()
            };
            let report = match lct_image::volume::volume_ref(source) {
                Some(label) => {
                    runtime()?.block_on(lct_image::volume::image_of(&label, out.clone(), options, this()?))?
                }
                None => lct_image::create(source, out, &options, &|done, total| bar.update(done, total))?,
            };
            bar.finish();
            if out.as_os_str() == "-" {
                // The image went to stdout: the report to stderr.
                eprintln!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            emit(&report, cli.global.output())
        }
        Command::Send { image } => {
            if std::io::stdout().is_terminal() {
                return Err(lct_core::cli::UsageError(
                    "send writes an image stream: pipe it (into lct-image restore - TARGET, over ssh)".into(),
                )
                .into());
            }
            let opened = lct_image::image::Opened::open(image, cli.allow_http)?;
            opened.send(&mut std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))?;
            Ok(())
        }
        Command::Restore { image, target, skip_matching, force } => {
            let bar = Progress::new("restoring");
            let options = RestoreOptions {
                skip_matching: *skip_matching,
                force: *force,
                allow_http: cli.allow_http,
                ..Default::default()
            };
            let report = match lct_image::volume::volume_ref(target) {
                Some(label) => {
                    let opened = lct_image::image::Opened::open(image, cli.allow_http)?;
                    runtime()?.block_on(lct_image::volume::restore_onto(opened, &label, options, this()?))?
                }
                None => lct_image::restore(image, target, &options, &|done, total| bar.update(done, total))?,
            };
            bar.finish();
            emit(&report, cli.global.output())
        }
        Command::Verify { image, target } => {
            let bar = Progress::new("verifying");
            let threads = lct_image::image::threads();
            let report = lct_image::verify(image, target.as_deref(), threads, cli.allow_http, &|done, total| {
                bar.update(done, total)
            })?;
            bar.finish();
            emit(&report, cli.global.output())
        }
        Command::Repo(command) => repo(command, cli.global.output(), cli.allow_http),
        Command::PushLinode { image, label, region, description, wait } => {
            let push = lct_image::linode::Push { label, region, description, wait: *wait };
            push.check()?;
            let opened = lct_image::image::Opened::open(image, cli.allow_http)?;
            let provider = lct_api::linode::LinodeProvider::from_env()?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let image = lct_image::linode::push(&runtime, &provider.api, &opened, &push, &|step| {
                tracing::info!("{}: {step}", opened.name)
            })?;
            println!("{}", serde_json::to_string(&image)?);
            Ok(())
        }
        Command::Info { image } => {
            let index = lct_image::image::Opened::open(image, cli.allow_http)?.index;
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

/// A runtime for the providers' calls (volumes).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// This program, to put on a node that restores or images a volume there.
fn this() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

fn print<T: serde::Serialize>(value: &T, format: OutputFormat, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    match format {
        OutputFormat::Jsonl => println!("{}", serde_json::to_string(value)?),
        OutputFormat::Table => println!("{}", table()),
    }
    Ok(())
}

/// Seconds since 1970 as `YYYY-MM-DD HH:MM` (UTC), for tables.
fn utc(seconds: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    lct_api::linode::api::api_time(at)[..16].replacen('T', " ", 1)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn repo(command: &RepoCommand, format: OutputFormat, allow_http: bool) -> anyhow::Result<()> {
    use lct_image::repo::Repo;
    let progress = |what: &'static str| {
        let bar = Progress::new(what);
        move |done: u64, total: u64| bar.update(done, total)
    };
    match command {
        RepoCommand::Init { repo } => {
            Repo::init(repo)?;
            eprintln!("{}: an image repository", repo.display());
            Ok(())
        }
        RepoCommand::Add { repo, source, name, label, force } => {
            let repo = Repo::open(repo)?;
            let threads = lct_image::image::threads();
            // An lct image (a file, REPO::NAME, a URL) is added as it is; anything else is
            // imaged first, into the repository's own tmp/ (same file system, removed after).
            let text = source.to_string_lossy();
            let added = if lct_image::remote::is_url(&text)
                || lct_image::image::repo_ref(source).is_some()
                || lct_image::index(source).is_ok()
            {
                let image = lct_image::image::Opened::open(source, allow_http)?;
                repo.add(name, &image, threads, &progress("adding"))?
            } else {
                let tmp = lct_core::fsutil::temp_file_in(&repo.path().join("tmp"), "create.", ".lcti")?;
                let options = CreateOptions { label: label.clone(), force: *force, ..Default::default() };
                match lct_image::volume::volume_ref(source) {
                    Some(volume) => {
                        let out = tmp.path().to_path_buf();
                        runtime()?.block_on(lct_image::volume::image_of(&volume, out, options, this()?))?;
                    }
                    None => {
                        lct_image::create(source, tmp.path(), &options, &progress("imaging"))?;
                    }
                }
                repo.add(name, &lct_image::image::Opened::open(tmp.path(), false)?, threads, &progress("adding"))?
            };
            print(&added, format, || {
                format!(
                    "{}::{}: {} data extents, {} new ({})",
                    added.repo,
                    added.name,
                    added.data_extents,
                    added.new_extents,
                    mib(added.new_bytes)
                )
            })
        }
        RepoCommand::List { repo } => {
            let entries = Repo::open(repo)?.list()?;
            match format {
                OutputFormat::Jsonl => {
                    for e in &entries {
                        println!("{}", serde_json::to_string(e)?);
                    }
                }
                OutputFormat::Table => {
                    println!(
                        "{:<24} {:>12} {:>12} {:>8}  {:<16} LABEL",
                        "NAME", "SIZE", "STORED", "EXTENTS", "CREATED"
                    );
                    for e in &entries {
                        println!(
                            "{:<24} {:>12} {:>12} {:>8}  {:<16}  {}",
                            e.name,
                            mib(e.size),
                            mib(e.image_bytes),
                            e.data_extents,
                            utc(e.created),
                            e.label
                        );
                    }
                }
            }
            Ok(())
        }
        RepoCommand::Show { repo, name } => {
            let entry = Repo::open(repo)?.show(name)?;
            print(&entry, format, || serde_json::to_string_pretty(&entry).unwrap_or_default())
        }
        RepoCommand::Rm { repo, name } => {
            Repo::open(repo)?.remove(name)?;
            eprintln!("{}::{name}: removed (lct-image repo prune frees its extents)", repo.display());
            Ok(())
        }
        RepoCommand::Prune { repo, dry_run } => {
            let pruned = Repo::open(repo)?.prune(*dry_run)?;
            print(&pruned, format, || {
                format!(
                    "{}: {} {} extents ({}), kept {}",
                    pruned.repo,
                    if *dry_run { "would remove" } else { "removed" },
                    pruned.removed_extents,
                    mib(pruned.removed_bytes),
                    pruned.kept_extents
                )
            })
        }
        RepoCommand::Verify { repo, name } => {
            let r = Repo::open(repo)?;
            let names = match name {
                Some(n) => vec![n.clone()],
                None => r.list()?.into_iter().map(|e| e.name).collect(),
            };
            for n in names {
                let spec = PathBuf::from(format!("{}::{n}", repo.display()));
                let report =
                    lct_image::verify(&spec, None, lct_image::image::threads(), false, &progress("verifying"))?;
                emit(&report, format)?;
            }
            Ok(())
        }
        RepoCommand::Export { repo, name, out } => {
            Repo::open(repo)?.export(name, out, &progress("exporting"))?;
            eprintln!("{}::{name}: written to {}", repo.display(), out.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_read_as_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00");
        assert_eq!(super::utc(951_825_600), "2000-02-29 12:00");
        assert_eq!(super::utc(1_795_834_919), "2026-11-28 03:01");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
