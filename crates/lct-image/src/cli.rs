//! lct-image's command line: its subcommands, arguments and help (the binary parses and
//! prints; tests and docs read the same definitions).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};

const EXAMPLES: &str = "\
Examples:
  lct-image create /dev/loop3 base.lcti --label debian-12     # a disk (or a file) into an image
  lct-image create debian-12-genericcloud-amd64.qcow2 base.lcti   # qcow2, VMDK, ... via qemu-img
  lct-image create https://example.org/disk.raw.xz base.lcti  # .gz, .xz, .zst streams, by URL too
  lct-image restore https://images.example.org/base.lcti /dev/vdb  # Range requests, resumed
  lct-image restore base.lcti /dev/disk/by-id/scsi-0Linode_Volume_data-1
  lct-image restore base.lcti node:web-1:/dev/sdb            # a node's device, over its SSH
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
  lct-image repo init ssh://store-1/srv/images               # a repository on a node's volume
  lct-image repo add ssh://store-1/srv/images base.lcti --name debian-12   # only new extents sent
  lct-image repo list ssh://store-1/srv/images               # every repo command, run on the node
  lct-image restore ssh://store-1/srv/images::debian-12 volume:web-2-data  # node to node
  lct-image push-linode /mnt/images::debian-12 --label debian-12-lct --region us-east --wait

An image is the disk in 4 MiB extents, each an independent zstd frame (all-zero extents as
tiny frames), then an index with a BLAKE3 hash per extent and zstd's seek table: see
docs/image-format.md.

Exit status: 0 success, 1 failure (a damaged image or target names its first bad extent),
2 usage error.";

/// Disk images: made from disks and volumes, verified, and streamed back onto them.
#[derive(Parser)]
#[command(name = "lct-image", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Read images by plain HTTP too (HTTPS only by default: plain HTTP can be changed on
    /// the way, and only the index's hashes would notice)
    #[arg(long, global = true)]
    pub allow_http: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// A repository of images on any disk or volume, each extent stored once; on a node's
    /// volume as ssh://NODE/PATH (lct-image runs there, over lct's SSH)
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
pub enum RepoCommand {
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
    /// A repository's side of an add from another machine (`repo add ssh://NODE/PATH ...`
    /// runs it there): the image's index on stdin, the extents it lacks asked for on stdout,
    /// then those frames on stdin
    #[command(hide = true)]
    Receive {
        repo: PathBuf,
        #[arg(long)]
        name: String,
    },
}

impl RepoCommand {
    /// The repository the command is about.
    pub fn repo(&self) -> &std::path::Path {
        use RepoCommand::*;
        let (Init { repo }
        | Add { repo, .. }
        | List { repo }
        | Show { repo, .. }
        | Rm { repo, .. }
        | Prune { repo, .. }
        | Verify { repo, .. }
        | Export { repo, .. }
        | Receive { repo, .. }) = self;
        repo
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
