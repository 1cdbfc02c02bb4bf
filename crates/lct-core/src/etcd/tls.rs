//! TLS towards etcd: the CA that signed the members' certificates, and this client's
//! certificate and key (mutual TLS), from PEM files named in the environment the way etcdctl
//! names them (`LCT_ETCD_CACERT`, `LCT_ETCD_CERT`, `LCT_ETCD_KEY`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use super::error::EtcdError;

/// The largest PEM file read (a chain of certificates is a few KiB).
const MAX_PEM: u64 = 1 << 20;

/// The files TLS is made of; all optional (without a CA, the system's web roots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates of the CAs the members' certificates must chain to.
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM, chain allowed), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM); refused when others may read it.
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// From `LCT_ETCD_CACERT`, `LCT_ETCD_CERT` and `LCT_ETCD_KEY` (empty values count as unset).
    pub fn from_env() -> TlsFiles {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        TlsFiles { ca: var("LCT_ETCD_CACERT"), cert: var("LCT_ETCD_CERT"), key: var("LCT_ETCD_KEY") }
    }

    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// rustls's configuration for these files, every file read and checked now.
    pub(super) fn config(&self) -> Result<TlsConfig, EtcdError> {
        let mut builder = TlsConfig::builder();
        if let Some(ca) = &self.ca {
            let pem = read_pem(ca)?;
            let certs = certificates(ca, &pem)?;
            builder = builder.root_certs(RootCerts::Specific(Arc::new(certs)));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, &read_pem(cert)?)?;
                check_private(key)?;
                let pem = read_pem(key)?;
                let key_der = PrivateKey::from_pem(&pem)
                    .map_err(|e| tls_file(key, format!("no private key in it ({e})")))?
                    .to_owned();
                builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key_der)));
            }
            (Some(_), None) => return Err(EtcdError::Tls("LCT_ETCD_CERT is set without LCT_ETCD_KEY".into())),
            (None, Some(_)) => return Err(EtcdError::Tls("LCT_ETCD_KEY is set without LCT_ETCD_CERT".into())),
            (None, None) => {}
        }
        Ok(builder.build())
    }
}

fn tls_file(path: &Path, why: impl std::fmt::Display) -> EtcdError {
    EtcdError::Tls(format!("{}: {why}", path.display()))
}

fn read_pem(path: &Path) -> Result<Vec<u8>, EtcdError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| tls_file(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM + 1).read_to_end(&mut bytes).map_err(|e| tls_file(path, e))?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(tls_file(path, format!("over {MAX_PEM} bytes: not a PEM file")));
    }
    Ok(bytes)
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<Certificate<'static>>, EtcdError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item.map_err(|e| tls_file(path, format!("not PEM: {e}")))? {
            ureq::tls::PemItem::Certificate(c) => certs.push(c),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(tls_file(path, "no certificate in it"));
    }
    Ok(certs)
}

/// A private key's file must be for its owner alone (as ssh asks of its keys).
fn check_private(path: &Path) -> Result<(), EtcdError> {
    let meta = std::fs::metadata(path).map_err(|e| tls_file(path, e))?;
    if meta.mode() & 0o077 != 0 {
        return Err(tls_file(
            path,
            format!("a private key others may read (mode {:04o}): chmod 600 it", meta.mode() & 0o7777),
        ));
    }
    Ok(())
}
