//! Errors users see when what they asked for is not valid.

/// A value that cannot be accepted, naming the field, the value and what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} '{value}': {reason}")]
pub struct ValidationError {
    /// The field path, e.g. `name`, `--env`, `spec.template.spec.timeoutSeconds`.
    pub field: String,
    /// The rejected value, as given.
    pub value: String,
    /// Why it was rejected and what is accepted instead.
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// An error and its causes on one line, `error: cause: cause`: the top-level messages of
/// hyper and friends alone say little ("client error (Connect)").
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        current = cause.source();
    }
    text
}
