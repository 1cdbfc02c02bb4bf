//! `lct-inventory state`: lct's state moved between stores (`migrate`), checked after the
//! copy, the source left as it was.

use anyhow::Context;
use lct_core::store::migrate::{Side, migrate};

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Copy every record, key, plan and bake to another store (which must hold no state yet,
    /// or what a failed run left), read each back and compare it byte for byte; the source
    /// is only read. Checked before the first write; a failure after it deletes what was
    /// written
    #[command(after_help = "\
Examples:
  LCT_STATE_KEY=/etc/lct/state.key lct-inventory state migrate --to etcd://10.0.0.1:2379,10.0.0.2:2379/team
  lct-inventory state migrate --from etcd://10.0.0.1:2379/team --to /var/lib/lct-copy

A store is an absolute directory (dir:/path) or etcd://HOST:PORT,.../PREFIX (etcds:// for TLS with
LCT_ETCD_CACERT, LCT_ETCD_CERT, LCT_ETCD_KEY). Secrets stay secret: 0600 files in a directory, sealed
with LCT_STATE_KEY on etcd. Hook logs (plans/NAME/logs) and the local cloud's lab state stay on this
machine. Nothing is deleted: point LCT_STATE at the target when satisfied.")]
    Migrate {
        /// Where the state goes
        #[arg(long, value_name = "STORE")]
        to: String,
        /// Where it comes from (default: LCT_STATE, else LCT_STATE_DIR, else /var/lib/lct)
        #[arg(long, value_name = "STORE")]
        from: Option<String>,
    },
}

pub fn run(command: StateCommand) -> anyhow::Result<()> {
    match command {
        StateCommand::Migrate { to, from } => {
            let from = from.unwrap_or_else(|| match std::env::var(lct_core::store::STATE_ENV) {
                Ok(spec) if !spec.is_empty() => spec,
                _ => lct_core::state::state_dir().display().to_string(),
            });
            let source = Side::open(&from)?;
            let target = Side::open(&to)?;
            let done = migrate(&source, &target).with_context(|| format!("migrating {from} to {to}"))?;
            let resumed = if done.resumed > 0 {
                format!(", {} already there from an earlier run", done.resumed)
            } else {
                String::new()
            };
            eprintln!(
                "migrated {} key(s) ({} secret, {} bytes{resumed}) from {} to {}, each read back and compared; {} is untouched",
                done.keys,
                done.secrets,
                done.bytes,
                source.store().describe(),
                target.store().describe(),
                source.store().describe(),
            );
            Ok(())
        }
    }
}
