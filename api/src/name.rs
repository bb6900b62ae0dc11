//! Resource names.
//!
//! Services follow Knative's rule: a lowercase RFC 1035 DNS label, because the name becomes
//! the first label of the service's host (`{name}.localhost`).

use crate::error::ValidationError;

/// Longest name a DNS label may have.
pub const MAX_NAME_LEN: usize = 63;

/// Checks that `name` is a lowercase DNS label: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 chars.
pub fn validate_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let fail = |reason: &str| Err(ValidationError::new(field, name, reason));
    if name.is_empty() {
        return fail("a name is required");
    }
    if name.len() > MAX_NAME_LEN {
        return fail(&format!(
            "must be at most {MAX_NAME_LEN} characters, it has {}",
            name.len()
        ));
    }
    let rule = "must be a lowercase DNS label: letters a-z, digits and '-', starting with a letter and ending with a letter or digit (e.g. 'hello-world')";
    let bytes = name.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return fail(rule);
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return fail(rule);
    }
    if bytes[bytes.len() - 1] == b'-' {
        return fail(rule);
    }
    Ok(())
}

/// Checks a revision name a user chose for `service`: a valid name starting with `{service}-`.
pub fn validate_revision_name(field: &str, service: &str, wanted: &str) -> Result<(), ValidationError> {
    validate_name(field, wanted)?;
    if !wanted.starts_with(&format!("{service}-")) {
        return Err(ValidationError::new(
            field,
            wanted,
            format!("a revision name starts with the service name: {service}-..."),
        ));
    }
    Ok(())
}

/// The name of a service's `number`th revision: `{service}-00001`.
pub fn revision_name(service: &str, number: u32) -> String {
    format!("{service}-{number:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "hello", "hello-world", "h2", "a-1-b", &"x".repeat(63)] {
            assert!(validate_name("name", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "Hello", "1abc", "-a", "a-", "a_b", "a.b", "héllo", &"x".repeat(64)] {
            let err = validate_name("name", bad).unwrap_err();
            assert_eq!(err.field, "name");
        }
    }

    #[test]
    fn too_long_says_how_long() {
        let err = validate_name("name", &"x".repeat(70)).unwrap_err();
        assert!(err.reason.contains("at most 63"), "{err}");
    }

    #[test]
    fn revision_names_are_zero_padded() {
        assert_eq!(revision_name("hello", 1), "hello-00001");
        assert_eq!(revision_name("hello", 123456), "hello-123456");
    }
}
