//! Printing services: tables for people, Knative-shaped JSON or YAML for tools.

use std::io::Write;

use rouse_api::knative::{Condition, KService};
use rouse_api::status::ServiceDescription;
use serde::Serialize;

use crate::args::Format;

/// Prints `value` as JSON or YAML on stdout.
pub(crate) fn print_as<T: Serialize>(value: &T, format: Format) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, value)?;
            writeln!(stdout)?;
        }
        Format::Yaml => stdout.write_all(serde_norway::to_string(value)?.as_bytes())?,
    }
    Ok(())
}

/// A Knative list object, as `kn service list -o json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceList<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: Vec<&'a KService>,
}

impl<'a> ServiceList<'a> {
    pub(crate) fn new(items: Vec<&'a KService>) -> Self {
        Self {
            api_version: rouse_api::knative::SERVING_API_VERSION,
            kind: "ServiceList",
            items,
        }
    }
}

/// The Ready condition of a service.
pub(crate) fn ready_condition(service: &KService) -> Option<&Condition> {
    service.status.as_ref()?.conditions.iter().find(|c| c.kind == "Ready")
}

/// `ready/desired` instances of the routed revision.
pub(crate) fn instances(description: &ServiceDescription) -> String {
    let ready: usize = description.revisions.iter().map(|r| r.ready()).sum();
    let desired: u32 = description
        .revisions
        .iter()
        .filter(|r| r.routed)
        .map(|r| r.desired)
        .sum();
    let frozen: usize = description.revisions.iter().map(|r| r.frozen()).sum();
    if frozen > 0 {
        format!("{ready}/{desired} ({frozen} frozen)")
    } else {
        format!("{ready}/{desired}")
    }
}

/// Left-aligned columns separated by three spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["NAME".to_string(), "URL".to_string()],
            vec!["hello-world".to_string(), "http://x".to_string()],
        ];
        assert_eq!(table(&rows), "NAME          URL\nhello-world   http://x\n");
    }
}
