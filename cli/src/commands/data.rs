//! `rouse secret|configmap create|update|list|describe|delete`, as kubectl spells them.
//!
//! A secret's values go to the daemon and never come back: every answer about a secret has
//! its keys and sizes only, so nothing here can print one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use rouse_api::ValidationError;
use rouse_api::name::validate_name;
use rouse_api::secret::{CORE_API_VERSION, DataChange, DataKind, DataObject, DataSummary, validate_key};

use crate::args::{
    DataArgs, DataCommand, DataCreateArgs, DataSourceArgs, DataUpdateArgs, DescribeArgs, NameArgs, OutputArgs,
};
use crate::client::Client;
use crate::flags;
use crate::output::{ObjectList, labels, print_as, table};

pub(crate) async fn run(client: &Client, kind: DataKind, args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Create(args) => create(client, kind, args).await,
        DataCommand::Update(args) => update(client, kind, args).await,
        DataCommand::List(args) => list(client, kind, args).await,
        DataCommand::Describe(args) => describe(client, kind, args).await,
        DataCommand::Delete(args) => delete(client, kind, args).await,
    }
}

/// `/v1/secrets` or `/v1/configmaps`.
fn collection(kind: DataKind) -> &'static str {
    match kind {
        DataKind::Secret => "/v1/secrets",
        DataKind::ConfigMap => "/v1/configmaps",
    }
}

/// "Secret" or "Config map", to start a sentence.
fn title(kind: DataKind) -> &'static str {
    match kind {
        DataKind::Secret => "Secret",
        DataKind::ConfigMap => "Config map",
    }
}

/// The keys and values the flags give, in flag order; a key given twice is refused.
fn read_sources(sources: &DataSourceArgs) -> Result<BTreeMap<String, Vec<u8>>, ValidationError> {
    let mut data = BTreeMap::new();
    let mut add = |flag: &str, key: String, value: Vec<u8>| {
        validate_key(&key).map_err(|e| ValidationError {
            field: flag.to_string(),
            ..e
        })?;
        if data.insert(key.clone(), value).is_some() {
            return Err(ValidationError::new(
                flag,
                &key,
                "the key is given more than once; keep one",
            ));
        }
        Ok(())
    };
    for (key, value) in flags::key_values("--from-literal", &sources.from_literal)? {
        add("--from-literal", key, value.into_bytes())?;
    }
    for file in &sources.from_env_file {
        let lines = flags::env_file("--from-env-file", file)?;
        for (key, value) in flags::key_values("--from-env-file", &lines)? {
            add("--from-env-file", key, value.into_bytes())?;
        }
    }
    for source in &sources.from_file {
        for (key, path) in file_sources(source)? {
            let value = std::fs::read(&path).map_err(|e| {
                ValidationError::new(
                    "--from-file",
                    path.display().to_string(),
                    format!("cannot be read: {e}"),
                )
            })?;
            add("--from-file", key, value)?;
        }
    }
    Ok(data)
}

/// `[KEY=]PATH`: the key (the file's name unless given) and the file; a directory gives each
/// regular file in it, keyed by its name, as kubectl does.
fn file_sources(source: &str) -> Result<Vec<(String, std::path::PathBuf)>, ValidationError> {
    let (key, path) = match source.split_once('=') {
        Some((key, path)) if !key.is_empty() => (Some(key.to_string()), Path::new(path)),
        _ => (None, Path::new(source)),
    };
    let unreadable = |e: std::io::Error| ValidationError::new("--from-file", source, format!("cannot be read: {e}"));
    let name_of = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if !path.is_dir() {
        let key = key.unwrap_or_else(|| name_of(path));
        return Ok(vec![(key, path.to_path_buf())]);
    }
    if key.is_some() {
        return Err(ValidationError::new(
            "--from-file",
            source,
            "a directory gives one key per file; leave out the KEY=",
        ));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        if entry.file_type().map_err(unreadable)?.is_file() {
            files.push((name_of(&entry.path()), entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

async fn create(client: &Client, kind: DataKind, args: DataCreateArgs) -> anyhow::Result<()> {
    validate_name(&format!("{} name", kind.word()), &args.name)?;
    let object = DataObject {
        data: read_sources(&args.sources)?,
        labels: flags::key_values("--label", &args.labels)?.into_iter().collect(),
        ..DataObject::new(kind, &args.name)
    };
    object.validate().map_err(flags::on_flags)?;
    let _: serde_json::Value = client.post(collection(kind), &object).await?;
    eprintln!(
        "{} '{}' created with {} ({}).",
        title(kind),
        args.name,
        count(object.data.len()),
        object.data.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

async fn update(client: &Client, kind: DataKind, args: DataUpdateArgs) -> anyhow::Result<()> {
    let change = DataChange {
        set: read_sources(&args.sources)?,
        remove: args.remove.clone(),
    };
    if change.set.is_empty() && change.remove.is_empty() {
        return Err(ValidationError::new(
            "--from-literal",
            "",
            "give keys to set (--from-literal, --from-file, --from-env-file) or to remove (--remove)",
        )
        .into());
    }
    let path = format!("{}/{}", collection(kind), args.name);
    let _: serde_json::Value = client.patch(&path, &change).await?;
    eprintln!(
        "{} '{}' updated; instances that start from now on read it.\nhint: `rouse deploy SERVICE --refresh` restarts a service on it",
        title(kind),
        args.name
    );
    Ok(())
}

/// `1 key`, `2 keys`.
fn count(n: usize) -> String {
    if n == 1 {
        "1 key".to_string()
    } else {
        format!("{n} keys")
    }
}

/// What the daemon answers about one, as what users may see: keys and sizes.
fn summary_of(kind: DataKind, answer: &serde_json::Value) -> anyhow::Result<DataSummary> {
    let summary = match kind {
        DataKind::Secret => serde_json::from_value(answer.clone())?,
        DataKind::ConfigMap => serde_json::from_value::<DataObject>(answer.clone())?.summary(),
    };
    Ok(summary)
}

/// As Kubernetes YAML: a config map whole, a secret with sizes in place of values.
fn yaml_object(kind: DataKind, answer: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    Ok(match kind {
        DataKind::Secret => serde_json::from_value::<DataSummary>(answer.clone())?.to_yaml_object(),
        DataKind::ConfigMap => serde_json::from_value::<DataObject>(answer.clone())?.to_yaml_object(),
    })
}

async fn list(client: &Client, kind: DataKind, args: OutputArgs) -> anyhow::Result<()> {
    let answers: Vec<serde_json::Value> = client.get(collection(kind)).await?;
    if let Some(format) = args.output {
        let objects = answers
            .iter()
            .map(|a| yaml_object(kind, a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let list_kind = match kind {
            DataKind::Secret => "SecretList",
            DataKind::ConfigMap => "ConfigMapList",
        };
        return print_as(&ObjectList::new(CORE_API_VERSION, list_kind, &objects), format);
    }
    if answers.is_empty() {
        eprintln!(
            "No {}s yet.\nhint: rouse {} create NAME --from-literal KEY=VALUE",
            kind.word(),
            kind.command()
        );
        return Ok(());
    }
    let mut rows = vec![["NAME", "KEYS", "UPDATED"].map(String::from).to_vec()];
    for answer in &answers {
        let summary = summary_of(kind, answer)?;
        rows.push(vec![
            summary.name.clone(),
            summary.keys.len().to_string(),
            age(&summary.updated),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// How long ago an RFC 3339 time was, as `kubectl get` shows ages: `5s`, `3m`, `2h`, `4d`.
fn age(at: &str) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(at) else {
        return "-".to_string();
    };
    let seconds = (Utc::now() - at.with_timezone(&Utc)).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

async fn describe(client: &Client, kind: DataKind, args: DescribeArgs) -> anyhow::Result<()> {
    let answer: serde_json::Value = client.get(&format!("{}/{}", collection(kind), args.name)).await?;
    match args.output.output {
        Some(format) => print_as(&yaml_object(kind, &answer)?, format),
        None => {
            print!("{}", render(&summary_of(kind, &answer)?));
            Ok(())
        }
    }
}

/// The human view: keys and sizes, never values.
fn render(summary: &DataSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", summary.name);
    let mut keys = summary.keys.iter().map(|(key, size)| {
        let unit = if *size == 1 { "byte" } else { "bytes" };
        format!("{key}  {size} {unit}")
    });
    let _ = writeln!(
        out,
        "Keys:         {}",
        keys.next().unwrap_or_else(|| "(none)".to_string())
    );
    for key in keys {
        let _ = writeln!(out, "              {key}");
    }
    if !summary.labels.is_empty() {
        let _ = writeln!(out, "Labels:       {}", labels(&summary.labels));
    }
    let _ = writeln!(out, "Created:      {}", summary.created);
    let _ = writeln!(out, "Updated:      {}", summary.updated);
    out
}

async fn delete(client: &Client, kind: DataKind, args: NameArgs) -> anyhow::Result<()> {
    client.delete(&format!("{}/{}", collection(kind), args.name)).await?;
    eprintln!("{} '{}' deleted.", title(kind), args.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_give_keys_from_literals_env_files_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.env"), "# settings\nMODE=fast\n\nLEVEL=a=b\n").unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        std::fs::write(files.join("config.yaml"), "a: 1\n").unwrap();
        std::fs::write(files.join("key.bin"), [0u8, 255]).unwrap();
        let sources = DataSourceArgs {
            from_literal: vec!["password=hunter2".to_string()],
            from_file: vec![
                files.display().to_string(),
                format!("cert={}", files.join("key.bin").display()),
            ],
            from_env_file: vec![dir.path().join("app.env")],
        };
        let data = read_sources(&sources).unwrap();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["LEVEL", "MODE", "cert", "config.yaml", "key.bin", "password"]
        );
        assert_eq!(data["LEVEL"], b"a=b");
        assert_eq!(data["cert"], [0, 255]);
    }

    #[test]
    fn bad_sources_name_their_flag() {
        let field = |sources: DataSourceArgs| read_sources(&sources).unwrap_err().field;
        let literal = |values: &[&str]| DataSourceArgs {
            from_literal: values.iter().map(|v| v.to_string()).collect(),
            ..DataSourceArgs::default()
        };
        assert_eq!(field(literal(&["novalue"])), "--from-literal");
        assert_eq!(field(literal(&["a b=1"])), "--from-literal");
        let twice = DataSourceArgs {
            from_literal: vec!["a=1".to_string()],
            from_file: vec!["a=/etc/hostname".to_string()],
            ..DataSourceArgs::default()
        };
        assert!(read_sources(&twice).unwrap_err().reason.contains("more than once"));
        let missing = DataSourceArgs {
            from_file: vec!["/nonexistent/file".to_string()],
            ..DataSourceArgs::default()
        };
        assert_eq!(field(missing), "--from-file");
    }

    #[test]
    fn the_human_view_has_keys_and_sizes_only() {
        let summary = DataSummary {
            name: "db".to_string(),
            kind: DataKind::Secret,
            keys: BTreeMap::from([("password".to_string(), 7), ("user".to_string(), 1)]),
            created: "2026-12-03T10:00:00Z".to_string(),
            updated: "2026-12-03T11:00:00Z".to_string(),
            labels: BTreeMap::from([("team".to_string(), "shop".to_string())]),
        };
        assert_eq!(
            render(&summary),
            "Name:         db\n\
             Keys:         password  7 bytes\n\
             \x20             user  1 byte\n\
             Labels:       team=shop\n\
             Created:      2026-12-03T10:00:00Z\n\
             Updated:      2026-12-03T11:00:00Z\n"
        );
    }
}
