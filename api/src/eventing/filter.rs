//! Trigger filters: attribute names, the `--filter` flag, and matching events.

use crate::error::ValidationError;

/// The broker that exists from the start.
use super::*;

/// Checks a CloudEvents attribute name: lowercase letters a-z and digits, as CloudEvents 1.0
/// requires (at most 20 characters is recommended, not required).
pub fn validate_attribute_name(field: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::new(
            field,
            name,
            "an attribute name is required, e.g. type",
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(ValidationError::new(
            field,
            name,
            "CloudEvents attribute names have lowercase letters a-z and digits only (e.g. type, source, myextension)",
        ));
    }
    Ok(())
}

/// Parses a `--filter ATTRIBUTE=VALUE` flag into an exact match. An empty value (`type=`)
/// matches any value the attribute has, as in Knative's `spec.filter.attributes`.
pub fn parse_filter_flag(flag: &str) -> Result<Filter, ValidationError> {
    let Some((attribute, value)) = flag.split_once('=') else {
        return Err(ValidationError::new(
            "--filter",
            flag,
            "write ATTRIBUTE=VALUE, e.g. --filter type=com.example.order",
        ));
    };
    validate_attribute_name("--filter", attribute).map_err(|e| ValidationError::new("--filter", flag, e.reason))?;
    Ok(Filter::Exact {
        attribute: attribute.to_string(),
        value: value.to_string(),
    })
}

impl Filter {
    /// `{exact: {attribute: value}}`.
    pub fn exact(attribute: &str, value: &str) -> Self {
        Filter::Exact {
            attribute: attribute.to_string(),
            value: value.to_string(),
        }
    }

    /// `{prefix: {attribute: value}}`.
    pub fn prefix(attribute: &str, value: &str) -> Self {
        Filter::Prefix {
            attribute: attribute.to_string(),
            value: value.to_string(),
        }
    }

    /// `{suffix: {attribute: value}}`.
    pub fn suffix(attribute: &str, value: &str) -> Self {
        Filter::Suffix {
            attribute: attribute.to_string(),
            value: value.to_string(),
        }
    }

    /// Whether an event passes, given a lookup of its attributes (`None`: the event lacks it).
    ///
    /// Knative's semantics: exact, prefix and suffix need the attribute to be present; an
    /// exact match with an empty value passes any value present; `all` of nothing passes.
    pub fn matches(&self, attr: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Filter::Exact { attribute, value } => attr(attribute).is_some_and(|v| value.is_empty() || v == *value),
            Filter::Prefix { attribute, value } => attr(attribute).is_some_and(|v| v.starts_with(value.as_str())),
            Filter::Suffix { attribute, value } => attr(attribute).is_some_and(|v| v.ends_with(value.as_str())),
            Filter::All(filters) => filters.iter().all(|f| f.matches(attr)),
            Filter::Any(filters) => filters.iter().any(|f| f.matches(attr)),
            Filter::Not(filter) => !filter.matches(attr),
        }
    }

    /// Checks attribute names, values and nesting.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.check("filter")
    }

    pub(crate) fn check(&self, field: &str) -> Result<(), ValidationError> {
        self.check_at_depth(field, 1)
    }

    fn check_at_depth(&self, field: &str, depth: usize) -> Result<(), ValidationError> {
        if depth > MAX_FILTER_DEPTH {
            return Err(ValidationError::new(
                field,
                "",
                format!("filters nest at most {MAX_FILTER_DEPTH} deep; flatten all/any/not"),
            ));
        }
        match self {
            Filter::Exact { attribute, .. } => validate_attribute_name(field, attribute),
            Filter::Prefix { attribute, value } | Filter::Suffix { attribute, value } => {
                validate_attribute_name(field, attribute)?;
                if value.is_empty() {
                    return Err(ValidationError::new(
                        field,
                        attribute,
                        "a prefix or suffix filter needs a value; to match any value use an exact filter with an empty value",
                    ));
                }
                Ok(())
            }
            Filter::All(filters) => {
                for (i, f) in filters.iter().enumerate() {
                    f.check_at_depth(&format!("{field}.all[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            Filter::Any(filters) => {
                if filters.is_empty() {
                    return Err(ValidationError::new(
                        field,
                        "any: []",
                        "`any` needs at least one filter (with none it would never match)",
                    ));
                }
                for (i, f) in filters.iter().enumerate() {
                    f.check_at_depth(&format!("{field}.any[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            Filter::Not(filter) => filter.check_at_depth(&format!("{field}.not"), depth + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// `NAME=VALUE` with a valid name is an exact match on it, whatever the value (which
        /// may hold `=`); the flag prints back to itself.
        #[test]
        fn valid_flags_are_exact_matches(attribute in "[a-z0-9]{1,20}", value in "\\PC{0,30}") {
            let flag = format!("{attribute}={value}");
            let filter = parse_filter_flag(&flag).unwrap();
            prop_assert_eq!(&filter, &Filter::exact(&attribute, &value));
            prop_assert!(filter.validate().is_ok());
        }

        /// A name with anything but a-z and 0-9 in it, or none, is refused naming the flag.
        #[test]
        fn other_names_are_refused(
            before in "[a-z0-9]{0,5}",
            bad in "[^a-z0-9=]",
            after in "[a-z0-9]{0,5}",
            value in "\\PC{0,10}",
        ) {
            let error = parse_filter_flag(&format!("{before}{bad}{after}={value}")).unwrap_err();
            prop_assert_eq!(error.field, "--filter");
            let nameless = format!("={value}");
            prop_assert!(parse_filter_flag(&nameless).is_err(), "{}", nameless);
        }

        #[test]
        fn any_text_gets_an_answer(flag in "\\PC{0,40}") {
            if let Ok(filter) = parse_filter_flag(&flag) {
                prop_assert!(filter.validate().is_ok(), "{:?}", filter);
            }
        }
    }
}
