//! A host key pair, the one type `ssh` (which stores and hands out keys) and `openssh_key`
//! (which makes them in process) share; its public path is `lct_core::ssh::HostKey`.

/// A host key pair, in OpenSSH's formats.
#[derive(Clone)]
pub struct HostKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----...`: secret; never logged.
    pub private: String,
    /// `ssh-ed25519 AAAA...` (no comment).
    pub public: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey").field("public", &self.public).field("private", &"<redacted>").finish()
    }
}
