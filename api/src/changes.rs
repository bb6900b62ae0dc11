//! What a revision changed against the one before it, for `rouse describe`: one short line
//! per setting, from the two templates alone.
//!
//! Generic over the template's fields (its serde form, flattened), so a field added to the
//! template is reported without touching this file; lists of named things (env) are keyed by
//! name, so adding one variable is one change, not a shift of every index after it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::template::RevisionTemplate;

/// Each setting `current` changed against `previous`: `env.C = 3 (added)`, `env.B removed`,
/// `container_concurrency 7 → 5`, `image digest sha256:1… → sha256:2…`.
pub fn changes(previous: &RevisionTemplate, current: &RevisionTemplate) -> Vec<String> {
    let (before, after) = (flat(previous), flat(current));
    let mut lines = Vec::new();
    for (key, value) in &after {
        match before.get(key) {
            None => lines.push(format!("{key} = {value} (added)")),
            Some(old) if old != value => lines.push(format!("{key} {old} → {value}")),
            Some(_) => {}
        }
    }
    lines.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| format!("{k} removed")),
    );
    lines
}

/// The template as `path → value` leaves.
fn flat(template: &RevisionTemplate) -> BTreeMap<String, String> {
    let mut template = template.clone();
    // Shown under its own name, and a new pin of the same tag is a change of its own.
    let digest = template.image_digest.take();
    let mut leaves = BTreeMap::new();
    if let Ok(value) = serde_json::to_value(&template) {
        flatten("", &value, &mut leaves);
    }
    if let Some(digest) = digest {
        leaves.insert("image digest".to_string(), digest);
    }
    leaves
}

fn flatten(path: &str, value: &Value, leaves: &mut BTreeMap<String, String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Null => {}
        Value::Object(fields) => {
            for (key, value) in fields {
                flatten(&join(key), value, leaves);
            }
        }
        // Named entries (env) by name, other lists whole: `command`, `args`.
        Value::Array(items)
            if items.iter().all(|i| i.get("name").and_then(Value::as_str).is_some()) && !items.is_empty() =>
        {
            for item in items {
                let name = item["name"].as_str().unwrap_or_default();
                let value = item.get("value").map_or_else(String::new, leaf);
                leaves.insert(format!("{}[{name}]", path), value);
            }
        }
        other => {
            leaves.insert(path.to_string(), leaf(other));
        }
    }
}

fn leaf(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_changed_setting_is_one_line() {
        let mut before = RevisionTemplate::new("app:1");
        before.env = vec!["A=1".parse().unwrap(), "B=2".parse().unwrap()];
        before.container_concurrency = 7;
        before.image_digest = Some("sha256:1".into());
        let mut after = before.clone();
        after.env = vec!["A=one".parse().unwrap(), "C=3".parse().unwrap()];
        after.container_concurrency = 5;
        after.scale.max = 3;
        after.image_digest = Some("sha256:2".into());
        after.command = Some(vec!["/app".into(), "--serve".into()]);
        assert_eq!(
            changes(&before, &after),
            [
                r#"command = ["/app","--serve"] (added)"#,
                "container_concurrency 7 → 5",
                "env[A] 1 → one",
                "env[C] = 3 (added)",
                "image digest sha256:1 → sha256:2",
                "scale.max 0 → 3",
                "env[B] removed",
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }
}
