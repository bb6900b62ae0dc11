//! `rouse deploy --source DIR`: the build context of DIR as Docker sends it (a tar of every
//! file `.dockerignore` keeps), built by the daemon's engine, tagged `rouse.local/NAME:<hash>`.
//!
//! `.dockerignore` is matched by hand: no crate implements Docker's rules (Go's
//! `filepath.Match` per path segment, `**` for any number of segments, `!` to keep again,
//! the last matching line deciding, and a pattern that matches a directory taking its whole
//! contents), and the gitignore crates differ from them on anchoring and `**`.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rouse_api::status::BuildEvent;

use crate::client::{Client, JsonLines};

/// Largest context sent (the daemon's limit too).
const MAX_CONTEXT_BYTES: u64 = 512 * 1024 * 1024;
/// Output lines of a failed build shown again with its error.
const FAILED_OUTPUT_LINES: usize = 15;
/// Longest line of the daemon's build answer taken in (one chunk of the build's output).
const MAX_OUTPUT_LINE: usize = 1024 * 1024;

/// One line of `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// Path segments, each a `filepath.Match` pattern or `**`.
    segments: Vec<String>,
    /// `!pattern`: keeps what an earlier line excluded.
    keep: bool,
}

/// The patterns of a `.dockerignore` text, cleaned as Docker cleans them.
fn parse_ignore(text: &str) -> Vec<Pattern> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (keep, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let segments: Vec<String> = pattern
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect();
            (!segments.is_empty()).then_some(Pattern { segments, keep })
        })
        .collect()
}

/// Whether `path` (relative, `/`-separated) is left out of the context.
fn ignored(patterns: &[Pattern], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let mut out = false;
    for pattern in patterns {
        // A pattern that matches the path or one of its parent directories.
        let hit = (1..=parts.len()).any(|n| segments_match(&pattern.segments, &parts[..n]));
        if hit {
            out = !pattern.keep;
        }
    }
    out
}

fn segments_match(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| segments_match(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(segment, tail)| glob(first.as_bytes(), segment.as_bytes()) && segments_match(rest, tail)),
    }
}

/// `filepath.Match` within one segment: `*`, `?`, `[...]` (with `^` or `!` to negate, and
/// ranges) and `\\` escapes.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let Some((&c, tail)) = name.split_first() else {
                return false;
            };
            let (negated, class) = match rest[..close].split_first() {
                Some((b'^' | b'!', class)) => (true, class),
                _ => (false, &rest[..close]),
            };
            let mut inside = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    inside |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    inside |= class[i] == c;
                    i += 1;
                }
            }
            inside != negated && glob(&rest[close + 1..], tail)
        }
        Some((b'\\', rest)) if !rest.is_empty() => name.first() == Some(&rest[0]) && glob(&rest[1..], &name[1..]),
        Some((&p, rest)) => name.first() == Some(&p) && glob(rest, &name[1..]),
    }
}

/// The tar of `dir` as `docker build` sends it: every file `.dockerignore` keeps, and the
/// Dockerfile and `.dockerignore` always; symlinks stored as links, never followed (a link
/// to `/etc/shadow` must not pack the file); fixed times and owners, so the same sources
/// give the same tar and the same tag.
pub(crate) fn context(dir: &Path, dockerfile: &str) -> anyhow::Result<Vec<u8>> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => parse_ignore(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context("cannot read .dockerignore"),
    };
    let always = [
        dockerfile.trim_start_matches("./").to_string(),
        ".dockerignore".to_string(),
    ];
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let mut total = 0u64;
    for (relative, path) in files {
        if ignored(&ignore, &relative) && !always.contains(&relative) {
            continue;
        }
        total += std::fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        if total > MAX_CONTEXT_BYTES {
            bail!(
                "the build context is over {} MiB; leave out what the image does not need with .dockerignore",
                MAX_CONTEXT_BYTES >> 20
            );
        }
        tar.append_path_with_name(&path, &relative)
            .with_context(|| format!("cannot add {relative} to the build context"))?;
    }
    Ok(tar.into_inner()?)
}

/// Every file and link under `dir`, with its path relative to `root`.
fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, files)?;
        } else {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            files.push((relative, path));
        }
    }
    Ok(())
}

/// `rouse.local/NAME:<12 hex digits of the context>`.
pub(crate) fn tag(service: &str, context: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    hasher.write(context);
    format!("rouse.local/{service}:{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// Builds `context` as `tag` through the daemon, showing the build's output on stderr; fails
/// with the failing step's output and error.
pub(crate) async fn build(client: &Client, context: Vec<u8>, dockerfile: &str, tag: &str) -> anyhow::Result<String> {
    eprintln!("Building {tag} ({} KiB of context)", context.len().div_ceil(1024));
    let path = format!("/v1/images/build?tag={}&dockerfile={}", encode(tag), encode(dockerfile));
    let body = client.post_bytes_stream(&path, context).await?;
    let mut events = JsonLines::new(body, "build", MAX_OUTPUT_LINE);
    // Only the last lines, to show again with the error: a chatty build holds no more.
    let mut last = std::collections::VecDeque::with_capacity(FAILED_OUTPUT_LINES);
    while let Some(event) = events.next::<BuildEvent>().await? {
        match event {
            BuildEvent::Output { text } => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    eprintln!("  {line}");
                    if last.len() == FAILED_OUTPUT_LINES {
                        last.pop_front();
                    }
                    last.push_back(format!("\n  {line}"));
                }
            }
            BuildEvent::Built { id } => {
                eprintln!("Built {tag} ({id}).");
                return Ok(tag.to_string());
            }
            BuildEvent::Failed { message } => {
                let shown: String = last.into_iter().collect();
                bail!("{message}\n  last build output:{shown}\nnothing was deployed");
            }
        }
    }
    bail!("the daemon's build answer ended before the build did")
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_follows_dockers_rules() {
        let patterns =
            parse_ignore("# comment\n\ntarget\n*.md\n!README.md\nsecrets/**\n**/*.tmp\n/build/out\n./logs\n[ab].txt\n");
        for (path, out) in [
            ("target", true),
            ("target/debug/app", true),
            ("src/target", false),
            ("notes.md", true),
            ("README.md", false),
            ("docs/notes.md", false),
            ("secrets/key", true),
            ("secrets/deep/key", true),
            ("a.tmp", true),
            ("x/y/z.tmp", true),
            ("build/out/bin", true),
            ("build/keep", false),
            ("logs/today", true),
            ("a.txt", true),
            ("c.txt", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(ignored(&patterns, path), out, "{path}");
        }
    }

    #[test]
    fn the_context_keeps_what_dockerignore_keeps_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "secret.txt\nDockerfile\n").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "hunter2").unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/app"), "code").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        let tar = context(dir.path(), "Dockerfile").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut names: Vec<(String, bool)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type().is_symlink(),
                )
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                (".dockerignore".to_string(), false),
                ("Dockerfile".to_string(), false),
                ("link".to_string(), true),
                ("src/app".to_string(), false)
            ]
        );
        // The same sources, the same tag; a change, another.
        let again = context(dir.path(), "Dockerfile").unwrap();
        assert_eq!(tag("web", &tar), tag("web", &again));
        std::fs::write(dir.path().join("src/app"), "new code").unwrap();
        assert_ne!(
            tag("web", &tar),
            tag("web", &context(dir.path(), "Dockerfile").unwrap())
        );
        assert!(tag("web", &tar).starts_with("rouse.local/web:"));
    }
}
