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
