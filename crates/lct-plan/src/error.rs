//! How a plan is refused: the file, and where in it (line, column, field).

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{file}: line {line}, column {column}: {field}{message}")]
    Parse { file: String, line: usize, column: usize, field: String, message: String },
    #[error("{file}: {field}: {message}")]
    Invalid { file: String, field: String, message: String },
    #[error("{0}")]
    Reference(String),
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}
