//! `rouse top`: instances, requests in flight and request rate per revision, refreshed live.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use rouse_api::status::ServiceDescription;
use tokio::time::Instant;

use crate::args::TopArgs;
use crate::client::Client;
use crate::output::table;

pub(crate) async fn run(client: &Client, args: TopArgs) -> anyhow::Result<()> {
    if !(0.1..=3600.0).contains(&args.interval) {
        bail!(
            "invalid --interval '{}': must be between 0.1 and 3600 seconds",
            args.interval
        );
    }
    let interval = Duration::from_secs_f64(args.interval);
    let live = std::io::stdout().is_terminal() && !args.once;
    let mut previous: HashMap<String, u64> = HashMap::new();
    let mut previous_at = Instant::now();
    let mut first = true;
    loop {
        let services: Vec<ServiceDescription> = client.get("/v1/services").await?;
        let now = Instant::now();
        let elapsed = now.duration_since(previous_at).as_secs_f64();
        let mut rows = vec![
            [
                "SERVICE",
                "REVISION",
                "READY",
                "DESIRED",
                "IN-FLIGHT",
                "QUEUED",
                "REQ/S",
            ]
            .map(String::from)
            .to_vec(),
        ];
        let mut served = HashMap::new();
        for service in &services {
            for revision in service.revisions.iter().filter(|r| r.routed || !r.instances.is_empty()) {
                let rate = match previous.get(&revision.name) {
                    Some(before) if !first && elapsed > 0.0 => {
                        format!(
                            "{:.1}",
                            revision.traffic.served.saturating_sub(*before) as f64 / elapsed
                        )
                    }
                    _ => "-".to_string(),
                };
                served.insert(revision.name.clone(), revision.traffic.served);
                rows.push(vec![
                    service.object.metadata.name.clone(),
                    revision.name.clone(),
                    revision.ready().to_string(),
                    revision.desired.to_string(),
                    revision.traffic.in_flight.to_string(),
                    revision.traffic.queued.to_string(),
                    rate,
                ]);
            }
        }
        previous = served;
        previous_at = now;
        // The first pass has no rate yet; --once waits one interval to have one.
        if !(first && args.once) {
            let mut stdout = std::io::stdout().lock();
            if live {
                // Clear the screen and go home, as top does.
                write!(stdout, "\x1b[2J\x1b[H")?;
            }
            write!(stdout, "{}", table(&rows))?;
            stdout.flush()?;
            if args.once {
                return Ok(());
            }
        }
        first = false;
        tokio::time::sleep(interval).await;
    }
}
