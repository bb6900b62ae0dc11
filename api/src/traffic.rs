//! Traffic: which revisions take a service's requests, in what shares, and which have tags.
//!
//! A service either follows its latest ready revision (the default: no targets stored) or pins
//! targets: `rouse traffic NAME --to hello-00001=90,@latest=10 --tag hello-00002=canary`.
//! [`resolve`] turns the targets into concrete revision names for routing.

use std::collections::BTreeMap;

use crate::error::ValidationError;
use crate::knative::TrafficTarget;
use crate::name::validate_name;

/// How `rouse traffic` names the latest ready revision.
pub const LATEST: &str = "@latest";

/// A revision as a traffic target names it: by name, or the latest ready one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum RevisionRef {
    Latest,
    Named(String),
}

impl RevisionRef {
    fn parse(s: &str) -> Self {
        if s == LATEST {
            RevisionRef::Latest
        } else {
            RevisionRef::Named(s.to_string())
        }
    }

    fn of(target: &TrafficTarget) -> Option<Self> {
        match (&target.revision_name, target.latest_revision) {
            (Some(name), _) => Some(RevisionRef::Named(name.clone())),
            (None, Some(true)) => Some(RevisionRef::Latest),
            _ => None,
        }
    }
}

/// A change asked with `rouse traffic`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficChange {
    /// New shares (replacing all shares), when given.
    pub to: Option<Vec<(RevisionRef, u32)>>,
    /// Tags to set: (revision, tag).
    pub tag: Vec<(RevisionRef, String)>,
    /// Tags to remove.
    pub untag: Vec<String>,
}

/// Parses `--to REV=PCT[,REV=PCT...]`.
pub fn parse_split(s: &str) -> Result<Vec<(RevisionRef, u32)>, ValidationError> {
    s.split(',')
        .map(|part| {
            let (revision, percent) = part.split_once('=').ok_or_else(|| {
                ValidationError::new(
                    "--to",
                    part,
                    "expected REVISION=PERCENT, e.g. --to hello-00001=90,@latest=10",
                )
            })?;
            let percent: u32 = percent
                .trim()
                .parse()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| ValidationError::new("--to", part, "the percent must be a whole number 0-100"))?;
            Ok((RevisionRef::parse(revision.trim()), percent))
        })
        .collect()
}

/// Parses `--tag REV=TAG`.
pub fn parse_tag(s: &str) -> Result<(RevisionRef, String), ValidationError> {
    match s.split_once('=') {
        Some((revision, tag)) if !revision.is_empty() => Ok((RevisionRef::parse(revision), tag.to_string())),
        _ => Err(ValidationError::new(
            "--tag",
            s,
            "expected REVISION=TAG, e.g. --tag hello-00002=canary",
        )),
    }
}

/// Reads Knative's `spec.traffic` (as `rouse apply` gets it) into the change that sets it: the
/// shares replace all shares and the tags all tags. `field` is the path of the list, for errors.
/// Whether the revisions exist is checked by [`apply_change`].
pub fn from_spec(targets: &[TrafficTarget], field: &str) -> Result<TrafficChange, ValidationError> {
    let mut to = Vec::new();
    let mut tag = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let revision = match (&target.revision_name, target.latest_revision) {
            (Some(name), None | Some(false)) => RevisionRef::Named(name.clone()),
            (None, Some(true)) => RevisionRef::Latest,
            (Some(name), Some(true)) => {
                return Err(ValidationError::new(
                    format!("{at}.latestRevision"),
                    "true",
                    format!("cannot be true when revisionName ({name}) is given; give one or the other"),
                ));
            }
            (None, _) => {
                return Err(ValidationError::new(
                    at,
                    "",
                    "names no revision; give revisionName: NAME or latestRevision: true",
                ));
            }
        };
        let percent = target.percent.unwrap_or(0);
        if percent > 100 {
            return Err(ValidationError::new(
                format!("{at}.percent"),
                percent,
                "must be a whole number 0-100",
            ));
        }
        if percent > 0 {
            match to.iter_mut().find(|(r, _)| *r == revision) {
                Some((_, p)) => *p += percent,
                None => to.push((revision.clone(), percent)),
            }
        }
        if let Some(name) = &target.tag {
            validate_name(&format!("{at}.tag"), name)?;
            if tag.iter().any(|(_, t)| t == name) {
                return Err(ValidationError::new(
                    format!("{at}.tag"),
                    name,
                    "is given twice; each tag names one revision",
                ));
            }
            tag.push((revision, name.clone()));
        }
    }
    let total: u64 = to.iter().map(|(_, p)| u64::from(*p)).sum();
    if !targets.is_empty() && total != 100 {
        return Err(ValidationError::new(
            field,
            targets
                .iter()
                .map(|t| t.percent.unwrap_or(0).to_string())
                .collect::<Vec<_>>()
                .join("+"),
            format!("percentages must add up to 100, they add up to {total}"),
        ));
    }
    Ok(TrafficChange {
        to: (!targets.is_empty()).then_some(to),
        tag,
        untag: Vec::new(),
    })
}

/// The stored targets after `change`, validated against the revisions that exist.
pub fn apply_change(
    current: &[TrafficTarget],
    change: &TrafficChange,
    revisions: &[String],
) -> Result<Vec<TrafficTarget>, ValidationError> {
    let mut shares: BTreeMap<RevisionRef, u32> = BTreeMap::new();
    let mut tags: BTreeMap<String, RevisionRef> = BTreeMap::new();
    if current.is_empty() {
        shares.insert(RevisionRef::Latest, 100);
    }
    for target in current {
        let Some(revision) = RevisionRef::of(target) else {
            continue;
        };
        if let Some(percent) = target.percent.filter(|p| *p > 0) {
            *shares.entry(revision.clone()).or_default() += percent;
        }
        if let Some(tag) = &target.tag {
            tags.insert(tag.clone(), revision);
        }
    }
    if let Some(to) = &change.to {
        shares.clear();
        for (revision, percent) in to {
            if *percent > 100 {
                return Err(ValidationError::new(
                    "spec.traffic[].percent",
                    percent,
                    "must be a whole number 0-100",
                ));
            }
            if shares.insert(revision.clone(), *percent).is_some() {
                return Err(ValidationError::new(
                    "spec.traffic",
                    describe(revision),
                    "is named twice; give each revision once",
                ));
            }
        }
    }
    for tag in &change.untag {
        if tags.remove(tag).is_none() {
            return Err(ValidationError::new(
                "spec.traffic[].tag",
                tag,
                "no such tag on this service",
            ));
        }
    }
    for (revision, tag) in &change.tag {
        validate_name("spec.traffic[].tag", tag)?;
        if let Some(other) = tags.get(tag).filter(|other| *other != revision) {
            return Err(ValidationError::new(
                "spec.traffic[].tag",
                tag,
                format!("is already on {}; take it off that revision first", describe(other)),
            ));
        }
        tags.insert(tag.clone(), revision.clone());
    }
    // In u64: stored shares are each at most 100, but a sum in u32 could still wrap.
    let total: u64 = shares.values().map(|p| u64::from(*p)).sum();
    if total != 100 {
        return Err(ValidationError::new(
            "spec.traffic",
            shares
                .iter()
                .map(|(r, p)| format!("{}={p}", describe(r)))
                .collect::<Vec<_>>()
                .join(","),
            format!("percentages must add up to 100, they add up to {total}"),
        ));
    }
    for revision in shares.keys().chain(tags.values()) {
        if let RevisionRef::Named(name) = revision
            && !revisions.contains(name)
        {
            return Err(ValidationError::new(
                "spec.traffic[].revisionName",
                name,
                "is not a revision of this service; `rouse revisions NAME` lists them",
            ));
        }
    }
    let mut targets: Vec<TrafficTarget> = shares
        .into_iter()
        .filter(|(_, percent)| *percent > 0)
        .map(|(revision, percent)| target(&revision, Some(percent), None))
        .collect();
    for (tag, revision) in tags {
        targets.push(target(&revision, Some(0), Some(tag)));
    }
    // Following the latest revision with nothing else set is the default: store nothing.
    if targets.len() == 1 && targets[0].latest_revision == Some(true) && targets[0].percent == Some(100) {
        targets.clear();
    }
    Ok(targets)
}

fn describe(revision: &RevisionRef) -> String {
    match revision {
        RevisionRef::Latest => LATEST.to_string(),
        RevisionRef::Named(name) => name.clone(),
    }
}

fn target(revision: &RevisionRef, percent: Option<u32>, tag: Option<String>) -> TrafficTarget {
    match revision {
        RevisionRef::Latest => TrafficTarget {
            latest_revision: Some(true),
            percent,
            tag,
            ..TrafficTarget::default()
        },
        RevisionRef::Named(name) => TrafficTarget {
            revision_name: Some(name.clone()),
            latest_revision: Some(false),
            percent,
            tag,
            ..TrafficTarget::default()
        },
    }
}

/// The traffic as Knative writes `spec.traffic`: the stored targets, or the default.
pub fn spec_traffic(stored: &[TrafficTarget]) -> Vec<TrafficTarget> {
    if stored.is_empty() {
        vec![target(&RevisionRef::Latest, Some(100), None)]
    } else {
        stored.to_vec()
    }
}

/// Traffic with revision names filled in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// (revision, percent), percents > 0, adding up to 100.
    pub split: Vec<(String, u32)>,
    /// (tag, revision).
    pub tags: Vec<(String, String)>,
}

impl Resolved {
    /// Whether `revision` takes any traffic, by share or by tag.
    pub fn routes_to(&self, revision: &str) -> bool {
        self.split.iter().any(|(r, _)| r == revision) || self.tags.iter().any(|(_, r)| r == revision)
    }
}

/// Fills in `@latest` with `latest` (the latest ready revision, or the latest one while none is
/// ready, so requests wait for it) and merges shares of the same revision.
pub fn resolve(stored: &[TrafficTarget], latest: &str) -> Resolved {
    resolve_rolled(stored, latest, |percent| vec![(latest.to_string(), percent)])
}

/// [`resolve`], with each `@latest` share split by `roll_out` (a gradual rollout's shares of
/// it, see [`crate::rollout::shares`]); a tag on `@latest` names `latest`.
pub fn resolve_rolled(
    stored: &[TrafficTarget],
    latest: &str,
    roll_out: impl Fn(u32) -> Vec<(String, u32)>,
) -> Resolved {
    let mut split: Vec<(String, u32)> = Vec::new();
    let mut tags = Vec::new();
    let mut add = |name: String, percent: u32| match split.iter_mut().find(|(r, _)| *r == name) {
        Some((_, p)) => *p += percent,
        None => split.push((name, percent)),
    };
    for target in spec_traffic(stored) {
        let (name, is_latest) = match RevisionRef::of(&target) {
            Some(RevisionRef::Named(name)) => (name, false),
            Some(RevisionRef::Latest) => (latest.to_string(), true),
            None => continue,
        };
        if let Some(percent) = target.percent.filter(|p| *p > 0) {
            if is_latest {
                for (revision, share) in roll_out(percent) {
                    add(revision, share);
                }
            } else {
                add(name.clone(), percent);
            }
        }
        if let Some(tag) = target.tag {
            tags.push((tag, name));
        }
    }
    Resolved { split, tags }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn revisions() -> Vec<String> {
        vec!["s-00001".into(), "s-00002".into()]
    }

    #[test]
    fn default_follows_latest() {
        let resolved = resolve(&[], "s-00002");
        assert_eq!(resolved.split, [("s-00002".to_string(), 100)]);
        assert!(resolved.tags.is_empty());
    }

    #[test]
    fn split_and_tags_resolve() {
        let change = TrafficChange {
            to: Some(parse_split("s-00001=90,@latest=10").unwrap()),
            tag: vec![parse_tag("s-00002=canary").unwrap()],
            untag: vec![],
        };
        let stored = apply_change(&[], &change, &revisions()).unwrap();
        let resolved = resolve(&stored, "s-00002");
        assert_eq!(
            resolved.split,
            [("s-00002".to_string(), 10), ("s-00001".to_string(), 90)]
        );
        assert_eq!(resolved.tags, [("canary".to_string(), "s-00002".to_string())]);
        assert!(resolved.routes_to("s-00001"));
        // Untagging and going back to @latest=100 is the default again.
        let back = TrafficChange {
            to: Some(parse_split("@latest=100").unwrap()),
            tag: vec![],
            untag: vec!["canary".into()],
        };
        assert!(apply_change(&stored, &back, &revisions()).unwrap().is_empty());
    }

    #[test]
    fn bad_changes_are_refused_with_the_reason() {
        let change = |to: &str| TrafficChange {
            to: Some(parse_split(to).unwrap()),
            ..TrafficChange::default()
        };
        let err = apply_change(&[], &change("s-00001=50,s-00002=40"), &revisions()).unwrap_err();
        assert!(err.reason.contains("add up to 90"), "{err}");
        let err = apply_change(&[], &change("s-00009=100"), &revisions()).unwrap_err();
        assert_eq!(err.value, "s-00009");
        let err = apply_change(&[], &change("s-00001=50,s-00001=50"), &revisions()).unwrap_err();
        assert!(err.reason.contains("twice"), "{err}");
        assert!(parse_split("s-00001").is_err());
        assert!(parse_split("s-00001=101").is_err());
        let tagged = apply_change(
            &[],
            &TrafficChange {
                tag: vec![parse_tag("s-00001=blue").unwrap()],
                ..Default::default()
            },
            &revisions(),
        )
        .unwrap();
        let dup = TrafficChange {
            tag: vec![parse_tag("s-00002=blue").unwrap()],
            ..Default::default()
        };
        assert!(
            apply_change(&tagged, &dup, &revisions())
                .unwrap_err()
                .reason
                .contains("already on s-00001")
        );
        let bad_tag = TrafficChange {
            tag: vec![parse_tag("s-00001=Blue!").unwrap()],
            ..Default::default()
        };
        assert!(apply_change(&[], &bad_tag, &revisions()).is_err());
        let missing = TrafficChange {
            untag: vec!["nope".into()],
            ..Default::default()
        };
        assert!(apply_change(&[], &missing, &revisions()).is_err());
    }

    /// From the admin API, shares are any u32: two that wrap to 100 in u32 arithmetic once
    /// passed the check.
    #[test]
    fn shares_past_100_are_refused_even_when_they_would_wrap() {
        let wrapping = TrafficChange {
            to: Some(vec![
                (RevisionRef::parse("s-00001"), u32::MAX),
                (RevisionRef::parse("s-00002"), 101),
            ]),
            ..TrafficChange::default()
        };
        let err = apply_change(&[], &wrapping, &revisions()).unwrap_err();
        assert_eq!(err.field, "spec.traffic[].percent");
    }

    /// Shares that add up to 100 over `n` revisions (`s-00001`...), the last maybe `@latest`:
    /// cut points in 0..=100, sorted, and the gaps between them.
    fn split_of_100() -> impl Strategy<Value = Vec<(RevisionRef, u32)>> {
        (proptest::collection::vec(0u32..=100, 0..5), any::<bool>()).prop_map(|(mut cuts, latest)| {
            cuts.sort_unstable();
            cuts.push(100);
            let mut last = 0;
            let n = cuts.len();
            cuts.into_iter()
                .enumerate()
                .map(|(i, cut)| {
                    let share = cut - last;
                    last = cut;
                    let revision = if latest && i == n - 1 {
                        RevisionRef::Latest
                    } else {
                        RevisionRef::Named(format!("s-{:05}", i + 1))
                    };
                    (revision, share)
                })
                .collect()
        })
    }

    fn flag(shares: &[(RevisionRef, u32)]) -> String {
        shares
            .iter()
            .map(|(r, p)| format!("{}={p}", describe(r)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("s-{i:05}")).collect()
    }

    proptest! {
        /// A split that adds up to 100 parses to itself, is stored, and resolves to shares
        /// that add up to 100.
        #[test]
        fn splits_of_100_parse_store_and_resolve(shares in split_of_100()) {
            let parsed = parse_split(&flag(&shares));
            prop_assert_eq!(parsed.as_ref(), Ok(&shares));
            let change = TrafficChange { to: parsed.ok(), ..TrafficChange::default() };
            let stored = apply_change(&[], &change, &names(shares.len())).unwrap();
            let resolved = resolve(&stored, "s-00009");
            prop_assert_eq!(resolved.split.iter().map(|(_, p)| *p).sum::<u32>(), 100, "{:?}", resolved);
            prop_assert!(resolved.split.iter().all(|(_, p)| *p > 0));
        }

        /// A split that does not add up to 100 parses but is never stored.
        #[test]
        fn other_sums_are_refused(shares in proptest::collection::vec(0u32..=100, 1..5)) {
            let total: u32 = shares.iter().sum();
            prop_assume!(total != 100);
            let split: Vec<_> = shares
                .iter()
                .enumerate()
                .map(|(i, p)| (RevisionRef::Named(format!("s-{:05}", i + 1)), *p))
                .collect();
            let change = TrafficChange { to: Some(parse_split(&flag(&split)).unwrap()), ..TrafficChange::default() };
            let error = apply_change(&[], &change, &names(split.len())).unwrap_err();
            prop_assert!(error.reason.contains(&format!("add up to {total}")), "{}", error);
        }

        /// A share over 100 is refused by the flag, whatever else is in it.
        #[test]
        fn shares_over_100_are_refused(mut shares in split_of_100(), over in 101u64..=u64::from(u32::MAX) + 1, at in any::<prop::sample::Index>()) {
            let i = at.index(shares.len());
            shares[i].1 = 0;
            let text = flag(&shares).split(',').enumerate().map(|(j, part)| {
                if j == i { format!("{}={over}", part.split_once('=').unwrap().0) } else { part.to_string() }
            }).collect::<Vec<_>>().join(",");
            let error = parse_split(&text).unwrap_err();
            prop_assert!(error.reason.contains("0-100"), "{}", error);
        }

        /// Any text: shares of at most 100 each that print back to the same, or an error.
        #[test]
        fn any_text_gets_an_answer(s in "\\PC{0,30}|([a-z0-9@-]{0,8}=[0-9 ]{0,4},?){0,4}") {
            if let Ok(shares) = parse_split(&s) {
                prop_assert!(shares.iter().all(|(_, p)| *p <= 100));
                prop_assert_eq!(parse_split(&flag(&shares)), Ok(shares));
            }
            if let Ok((revision, tag)) = parse_tag(&s) {
                prop_assert_eq!(parse_tag(&format!("{}={tag}", describe(&revision))), Ok((revision, tag)));
            }
        }
    }
}
