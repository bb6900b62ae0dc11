//! `rouse`: the daemon and its client commands.
//!
//! `main` only calls [`run`], prints an error chain (`error: …`, `Caused by: …`, `hint: …`) to
//! stderr and exits non-zero. Results go to stdout, progress and diagnostics to stderr.
//!
//! Layout: [`args`] (flags), [`flags`] (flag values into the api's records: labels, sinks,
//! delivery options), [`client`] (admin API client), [`commands`] (one module per command),
//! [`manifest`] (the YAML file of `apply -f`), [`output`] (tables, JSON, YAML), [`progress`]
//! (what deploy shows while it waits).

#![forbid(unsafe_code)]

mod args;
mod client;
mod commands;
mod flags;
mod manifest;
mod output;
mod progress;
mod pull;
mod source;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rouse_control::Home;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Completion(args) = &cli.command {
        // Generated from the same definitions clap parses with: a flag added is completed.
        // Into a buffer first: clap_complete panics on a write error (`| head` closing the pipe).
        let mut command = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(args.shell, &mut command, "rouse", &mut script);
        std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
        return Ok(());
    }
    let home = Home::new(home_dir(cli.home)?);
    match cli.command {
        Command::Serve(args) => commands::serve::run(&home, args),
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(commands::client_command(&home, command))
        }
    }
}

fn home_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".rouse")),
        None => anyhow::bail!(
            "cannot find the default home ~/.rouse: $HOME is not set\nhint: pass --home DIR or set ROUSE_HOME"
        ),
    }
}

/// Prints `error: first line`, its `hint:` lines, then `Caused by:` for each cause.
fn report(error: &anyhow::Error) {
    let mut stderr = io::stderr().lock();
    let text = error.to_string();
    let (message, hints): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| !l.starts_with("hint: "));
    let _ = writeln!(stderr, "error: {}", message.join("\n"));
    for cause in error.chain().skip(1) {
        let _ = writeln!(stderr, "  Caused by: {cause}");
    }
    for hint in hints {
        let _ = writeln!(stderr, "{hint}");
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
