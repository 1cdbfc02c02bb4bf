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

impl PlanError {
    /// The error with its place in the plan's `text`: an `Invalid` one (found after parsing)
    /// gets the line and column of its field, as parse errors have them (the nearest
    /// enclosing field's when the field itself is not written); others are unchanged.
    pub fn located(self, text: &str) -> PlanError {
        let PlanError::Invalid { file, field, message } = self else { return self };
        match crate::locate::locate(text, &field_path(&field)) {
            (0, _) => PlanError::Invalid { file, field, message },
            (line, column) => PlanError::Parse { file, line, column, field: format!("field {field}: "), message },
        }
    }
}

/// A field as errors name it (`firewall.allow[0].to`) as the path [`crate::locate`] walks
/// (`firewall`, `allow`, `0`, `to`).
fn field_path(field: &str) -> Vec<String> {
    field.replace('[', ".").replace(']', "").split('.').filter(|p| !p.is_empty()).map(String::from).collect()
}
