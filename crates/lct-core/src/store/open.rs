//! Which store: [`open`] from the environment, [`open_spec`] from a name; the state
//! directory's path; [`materialize`] for programs that need a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::api::{SharedStore, Store};
use super::key::Key;
use super::local::LocalStore;
use super::types::StoreError;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/lct";

/// The state directory: `LCT_STATE_DIR`, else `/var/lib/lct`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("LCT_STATE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// The environment variable naming a shared store (`etcd://...`); unset or empty: the
/// local directory (`LCT_STATE_DIR`, else `/var/lib/lct`).
pub const STATE_ENV: &str = "LCT_STATE";

/// The store the environment names: `LCT_STATE` if set, else the local directory
/// ([`state_dir`]).
pub fn open() -> Result<SharedStore, StoreError> {
    match std::env::var(STATE_ENV) {
        Ok(spec) if !spec.is_empty() => open_spec(&spec),
        _ => Ok(Arc::new(LocalStore::new(&state_dir()))),
    }
}

/// The store `spec` names: a directory path (`/var/lib/lct`, `dir:/var/lib/lct`) or
/// `etcd://...` (when this build has the etcd backend).
pub fn open_spec(spec: &str) -> Result<SharedStore, StoreError> {
    if let Some(dir) = local_dir(spec)? {
        return Ok(Arc::new(LocalStore::new(dir)));
    }
    if spec.starts_with("etcd://") || spec.starts_with("etcds://") {
        #[cfg(feature = "etcd")]
        return Ok(Arc::new(super::etcd::EtcdStore::from_env(spec)?));
        #[cfg(not(feature = "etcd"))]
        return Err(StoreError::Spec { spec: spec.into(), detail: "this build has no etcd backend".into() });
    }
    Err(StoreError::Spec {
        spec: spec.into(),
        detail: "expected an absolute directory or etcd://HOST:PORT,.../PREFIX".into(),
    })
}

/// The directory a local spec names (`/dir`, `dir:/dir`), `None` for another kind. `dir:`
/// with nothing or a relative path after it is refused: the state would land wherever the
/// command happens to run.
pub fn local_dir(spec: &str) -> Result<Option<&Path>, StoreError> {
    let Some(dir) = spec.strip_prefix("dir:").or_else(|| spec.starts_with('/').then_some(spec)) else {
        return Ok(None);
    };
    if !Path::new(dir).is_absolute() {
        return Err(StoreError::Spec { spec: spec.into(), detail: "dir: needs an absolute directory".into() });
    }
    Ok(Some(Path::new(dir)))
}

/// A file holding `key`'s value for a program that needs a path: the value's own file
/// when the store keeps files ([`Store::local_path`]), else a private copy (0600, in a
/// private temporary directory) removed when the returned value drops.
pub fn materialize(store: &dyn Store, key: &Key) -> Result<Materialized, StoreError> {
    if let Some(path) = store.local_path(key) {
        return Ok(Materialized { path, _dir: None });
    }
    let entry = store.get(key)?.ok_or_else(|| StoreError::Corrupt {
        store: store.describe(),
        key: key.to_string(),
        detail: "absent".into(),
    })?;
    let dir =
        crate::fsutil::secret_temp_dir("lct-state.").map_err(|e| StoreError::io("a private temporary directory", e))?;
    let path = dir.path().join(key.last());
    crate::fsutil::atomic_write(&path, &entry.value, 0o600).map_err(|e| StoreError::io(path.display(), e))?;
    Ok(Materialized { path, _dir: Some(dir) })
}

/// See [`materialize`].
#[derive(Debug)]
pub struct Materialized {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}
