//! Reading the YAML file of `apply -f` and `delete -f`, and naming it in errors.

use std::io::Read;

use anyhow::{Context, bail};
use rouse_api::manifest::{Document, parse};

/// A manifest read from a file (or standard input for `-`).
pub(crate) struct ManifestFile {
    /// The name errors use: the path, or `<stdin>`.
    pub(crate) name: String,
    pub(crate) documents: Vec<Document>,
}

impl ManifestFile {
    /// Reads and checks every document; any bad document fails the whole file.
    pub(crate) fn read(path: &str) -> anyhow::Result<Self> {
        let (name, text) = if path == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the manifest from standard input")?;
            ("<stdin>".to_string(), text)
        } else {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
            (path.to_string(), text)
        };
        match parse(&text) {
            Ok(documents) => Ok(Self { name, documents }),
            Err(errors) => {
                let lines: Vec<String> = errors.iter().map(|e| format!("{name}: {e}")).collect();
                bail!(
                    "{}\nhint: nothing was applied; fix the file and run the command again",
                    lines.join("\n")
                )
            }
        }
    }

    /// The daemon's error about this file, each line naming the file.
    pub(crate) fn blame(&self, error: anyhow::Error) -> anyhow::Error {
        let text = error.to_string();
        if !text.starts_with("document ") {
            return error;
        }
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.starts_with("document ") {
                true => format!("{}: {l}", self.name),
                false => l.to_string(),
            })
            .collect();
        anyhow::anyhow!(
            "{}\nhint: nothing was applied; fix the file and run the command again",
            lines.join("\n")
        )
    }
}
