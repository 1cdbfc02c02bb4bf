//! What goes wrong with an image: the one error type of this crate, and the helper that
//! names the file an I/O error happened on.

use std::path::Path;

use crate::format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Format { path: String, error: FormatError },
    #[error("{0}")]
    Refused(String),
    #[error("{image}: extent {index} (bytes {offset}..{end}) is damaged: {why}")]
    Damaged { image: String, index: usize, offset: u64, end: u64, why: String },
    #[error("{target}: extent {index} (bytes {offset}..{end}) differs from the image")]
    Differs { target: String, index: usize, offset: u64, end: u64 },
}

pub(crate) fn io_at(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |error| ImageError::Io { path: path.display().to_string(), error }
}
