//! `rouse logs NAME [-f] [--tail N]`.

use std::io::Write;

use http_body_util::BodyExt;

use crate::args::LogsArgs;
use crate::client::Client;

pub(crate) async fn run(client: &Client, args: LogsArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/services/{}/logs?follow={}", args.name, args.follow);
    if let Some(tail) = args.tail {
        path.push_str(&format!("&tail={tail}"));
    }
    let mut body = client.stream(&path).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            stdout.write_all(&data)?;
            stdout.flush()?;
        }
    }
    Ok(())
}
