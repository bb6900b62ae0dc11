//! Brokers, triggers and ping sources, declared and kept running.
//!
//! The records live in the state store; this module starts what they declare (a broker in the
//! ingress, a trigger in the dispatcher, a ping source's timer) at startup and on every change,
//! and answers the admin API with their Knative-shaped objects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use rouse_api::ValidationError;
use rouse_api::eventing::{Broker, DEFAULT_BROKER, Delivery, PingSource, Sink, Trigger};
use rouse_api::eventing_knative::{KBroker, KPingSource, KTrigger, broker_object, ping_source_object, trigger_object};
use rouse_api::knative::{Condition, ConditionStatus};
use rouse_api::name::validate_name;
use rouse_eventing::Event;
use rouse_eventing::{BrokerIngress, Dispatcher};
use rouse_eventing::{Schedule, ping_event_parts};
use tokio_util::sync::CancellationToken;

use crate::apply::ApplyOutcome;
use crate::error::{ConflictReason, ControlError, ObjectKind};
use crate::sinks::SinkAddresses;
use crate::store::{Kind, Store};

/// Retries of a ping source's event to a sink that is not a broker (a broker stores it at once).
const PING_RETRIES: u32 = 3;

/// The eventing side of the daemon.
pub(crate) struct Eventing {
    store: Arc<Store>,
    ingress: Arc<BrokerIngress>,
    dispatcher: Arc<Dispatcher>,
    sinks: SinkAddresses,
    /// A running timer per ping source.
    pings: Mutex<HashMap<String, CancellationToken>>,
    cancel: CancellationToken,
}

/// What `/healthz` reports: problems make the daemon not ready; warnings do not.
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

fn log_error(e: impl std::error::Error + Send + Sync + 'static) -> ControlError {
    ControlError::store("event log", e)
}

impl Eventing {
    /// Whether the state store and the event log can write, and which stored records are
    /// skipped as unreadable.
    pub(crate) async fn health(&self) -> Health {
        let mut health = Health::default();
        if let Err(reason) = self.store.health() {
            health.problems.push(format!("the state store cannot write: {reason}"));
        }
        if let Err(reason) = self.ingress.log().health().await {
            health
                .problems
                .push(format!("the event log cannot write (brokers answer 503): {reason}"));
        }
        for unreadable in self.store.unreadable() {
            health.warnings.push(format!(
                "stored record {} cannot be decoded and is skipped: {}",
                unreadable.record, unreadable.reason
            ));
        }
        health
    }

    /// Starts every broker, trigger and ping source the store holds (and the `default` broker,
    /// which always exists).
    pub(crate) async fn start(
        store: Arc<Store>,
        ingress: Arc<BrokerIngress>,
        dispatcher: Arc<Dispatcher>,
        sinks: SinkAddresses,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, ControlError> {
        if store.record::<Broker>(Kind::Broker, DEFAULT_BROKER)?.is_none() {
            let default = Broker {
                name: DEFAULT_BROKER.to_string(),
                created_at: Utc::now(),
                labels: Vec::new(),
                delivery: None,
            };
            store.save_record(Kind::Broker, DEFAULT_BROKER, &default)?;
        }
        let eventing = Arc::new(Self {
            store,
            ingress,
            dispatcher,
            sinks,
            pings: Mutex::new(HashMap::new()),
            cancel,
        });
        // A log that fails here (damaged, unavailable) stops eventing, not the daemon: the
        // failure is logged and `/healthz` reports it.
        for broker in eventing.store.records::<Broker>(Kind::Broker)? {
            if let Err(error) = eventing.ingress.add_broker(&broker.name).await {
                tracing::error!(broker = %broker.name, %error, "broker not ready: the event log fails");
            }
        }
        for trigger in eventing.store.records::<Trigger>(Kind::Trigger)? {
            let name = trigger.name.clone();
            if let Err(error) = eventing.run_trigger(trigger).await {
                tracing::error!(trigger = %name, %error, "trigger not started: the event log fails");
            }
        }
        for source in eventing.store.records::<PingSource>(Kind::PingSource)? {
            match Schedule::of(&source) {
                Ok(schedule) => eventing.run_ping(source, schedule),
                Err(reason) => tracing::warn!(source = %source.name, %reason, "ping source not started"),
            }
        }
        Ok(eventing)
    }

    /// Stops triggers (each writes its cursor) and ping sources.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        self.dispatcher.shutdown().await;
    }

    pub(crate) fn brokers(&self) -> Result<Vec<KBroker>, ControlError> {
        Ok(self
            .store
            .records::<Broker>(Kind::Broker)?
            .iter()
            .map(|b| self.broker_object(b))
            .collect())
    }

    pub(crate) fn broker(&self, name: &str) -> Result<KBroker, ControlError> {
        let broker: Broker = self
            .store
            .record(Kind::Broker, name)?
            .ok_or_else(|| ControlError::not_found(ObjectKind::Broker, name))?;
        Ok(self.broker_object(&broker))
    }

    fn broker_object(&self, broker: &Broker) -> KBroker {
        let mut object = broker_object(broker, &self.sinks.events_base());
        if let Some(status) = object.status.as_mut() {
            status.conditions = vec![Condition::new("Ready", ConditionStatus::True, None, None)];
        }
        object
    }

    /// Creates or updates a broker; returns its object and what changed.
    pub(crate) async fn put_broker(
        &self,
        name: &str,
        mut broker: Broker,
    ) -> Result<(KBroker, ApplyOutcome), ControlError> {
        validate_name("broker name", name)?;
        broker.name = name.to_string();
        broker.validate()?;
        let existing: Option<Broker> = self.store.record(Kind::Broker, name)?;
        if let Some(existing) = &existing {
            broker.created_at = existing.created_at;
        }
        let outcome = outcome(existing.as_ref(), &broker);
        if outcome == ApplyOutcome::Unchanged {
            return Ok((self.broker_object(&broker), outcome));
        }
        self.store.save_record(Kind::Broker, name, &broker)?;
        self.ingress.add_broker(name).await.map_err(log_error)?;
        // Triggers that take the broker's delivery options follow a change of them.
        for trigger in self.store.records::<Trigger>(Kind::Trigger)? {
            if trigger.broker == name {
                self.run_trigger(trigger).await?;
            }
        }
        Ok((self.broker_object(&broker), outcome))
    }

    /// Deletes a broker and its events. Refused while triggers use it.
    pub(crate) async fn delete_broker(&self, name: &str) -> Result<(), ControlError> {
        if self.store.record::<Broker>(Kind::Broker, name)?.is_none() {
            return Err(ControlError::not_found(ObjectKind::Broker, name));
        }
        let users: Vec<String> = self
            .store
            .records::<Trigger>(Kind::Trigger)?
            .into_iter()
            .filter(|t| t.broker == name)
            .map(|t| t.name)
            .collect();
        if !users.is_empty() {
            return Err(ControlError::Conflict {
                kind: ObjectKind::Broker,
                name: name.to_owned(),
                reason: ConflictReason::HasTriggers(users),
            });
        }
        self.store.delete_record(Kind::Broker, name)?;
        self.ingress.remove_broker(name).await.map_err(log_error)?;
        Ok(())
    }

    pub(crate) fn triggers(&self) -> Result<Vec<KTrigger>, ControlError> {
        Ok(self
            .store
            .records::<Trigger>(Kind::Trigger)?
            .iter()
            .map(|t| self.trigger_object(t))
            .collect())
    }

    pub(crate) fn trigger(&self, name: &str) -> Result<KTrigger, ControlError> {
        let trigger: Trigger = self
            .store
            .record(Kind::Trigger, name)?
            .ok_or_else(|| ControlError::not_found(ObjectKind::Trigger, name))?;
        Ok(self.trigger_object(&trigger))
    }

    fn trigger_object(&self, trigger: &Trigger) -> KTrigger {
        trigger_object(trigger, Some(&self.sinks.url(&trigger.subscriber)))
    }

    /// Creates or updates a trigger; returns its object and what changed.
    pub(crate) async fn put_trigger(
        &self,
        name: &str,
        mut trigger: Trigger,
    ) -> Result<(KTrigger, ApplyOutcome), ControlError> {
        validate_name("trigger name", name)?;
        trigger.name = name.to_string();
        trigger.validate()?;
        if self.store.record::<Broker>(Kind::Broker, &trigger.broker)?.is_none() {
            return Err(ValidationError::new(
                "spec.broker",
                &trigger.broker,
                "no such broker; create it with `rouse broker create` or use 'default'",
            )
            .into());
        }
        let existing: Option<Trigger> = self.store.record(Kind::Trigger, name)?;
        if let Some(existing) = &existing {
            trigger.created_at = existing.created_at;
        }
        let outcome = outcome(existing.as_ref(), &trigger);
        if outcome == ApplyOutcome::Unchanged {
            return Ok((self.trigger_object(&trigger), outcome));
        }
        if existing.as_ref().is_some_and(|e| e.broker != trigger.broker) {
            // Its cursor belongs to the old broker.
            self.dispatcher.remove(name).await.map_err(log_error)?;
        }
        self.store.save_record(Kind::Trigger, name, &trigger)?;
        let object = self.trigger_object(&trigger);
        self.run_trigger(trigger).await?;
        Ok((object, outcome))
    }

    /// Runs a trigger with its broker's delivery options when it has none of its own, and
    /// with Knative's broker defaults when neither has any (as Knative's webhook fills them
    /// in from `config-br-defaults`).
    async fn run_trigger(&self, mut trigger: Trigger) -> Result<(), ControlError> {
        if trigger.delivery == Delivery::default() {
            let broker = self.store.record::<Broker>(Kind::Broker, &trigger.broker)?;
            trigger.delivery = broker.and_then(|b| b.delivery).unwrap_or_else(Delivery::broker_default);
        }
        self.dispatcher.upsert(trigger).await.map_err(log_error)
    }

    pub(crate) async fn delete_trigger(&self, name: &str) -> Result<(), ControlError> {
        if !self.store.delete_record(Kind::Trigger, name)? {
            return Err(ControlError::not_found(ObjectKind::Trigger, name));
        }
        self.dispatcher.remove(name).await.map_err(log_error)
    }

    pub(crate) fn ping_sources(&self) -> Result<Vec<KPingSource>, ControlError> {
        Ok(self
            .store
            .records::<PingSource>(Kind::PingSource)?
            .iter()
            .map(|p| ping_source_object(p, Some(&self.sinks.url(&p.sink))))
            .collect())
    }

    pub(crate) fn ping_source(&self, name: &str) -> Result<KPingSource, ControlError> {
        let source: PingSource = self
            .store
            .record(Kind::PingSource, name)?
            .ok_or_else(|| ControlError::not_found(ObjectKind::PingSource, name))?;
        Ok(ping_source_object(&source, Some(&self.sinks.url(&source.sink))))
    }

    /// Creates or updates a ping source and (re)starts its timer when it changed.
    pub(crate) fn put_ping_source(
        self: &Arc<Self>,
        name: &str,
        mut source: PingSource,
    ) -> Result<(KPingSource, ApplyOutcome), ControlError> {
        validate_name("ping source name", name)?;
        source.name = name.to_string();
        source.validate()?;
        let schedule =
            Schedule::of(&source).map_err(|reason| ValidationError::new("spec.schedule", &source.schedule, reason))?;
        let existing: Option<PingSource> = self.store.record(Kind::PingSource, name)?;
        if let Some(existing) = &existing {
            source.created_at = existing.created_at;
        }
        let object = ping_source_object(&source, Some(&self.sinks.url(&source.sink)));
        let outcome = outcome(existing.as_ref(), &source);
        // An unchanged source keeps its timer: restarting it could skip or repeat a firing.
        if outcome != ApplyOutcome::Unchanged {
            self.store.save_record(Kind::PingSource, name, &source)?;
            self.run_ping(source, schedule);
        }
        Ok((object, outcome))
    }

    pub(crate) fn delete_ping_source(&self, name: &str) -> Result<(), ControlError> {
        if !self.store.delete_record(Kind::PingSource, name)? {
            return Err(ControlError::not_found(ObjectKind::PingSource, name));
        }
        if let Some(timer) = self.pings.lock().unwrap_or_else(|e| e.into_inner()).remove(name) {
            timer.cancel();
        }
        Ok(())
    }

    /// Starts (or restarts) a ping source's timer.
    fn run_ping(self: &Arc<Self>, source: PingSource, schedule: Schedule) {
        let stop = self.cancel.child_token();
        if let Some(old) = self
            .pings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source.name.clone(), stop.clone())
        {
            old.cancel();
        }
        let eventing = self.clone();
        tokio::spawn(async move {
            loop {
                let now = Utc::now();
                let Some(next) = schedule.next_after(now) else {
                    tracing::warn!(source = %source.name, "the schedule never fires again");
                    return;
                };
                let wait = (next - now).to_std().unwrap_or_default();
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                eventing.ping(&source, next).await;
            }
        });
    }

    /// Sends one ping source event: into a broker at once (durably), elsewhere with retries.
    async fn ping(&self, source: &PingSource, at: chrono::DateTime<Utc>) {
        let parts = ping_event_parts(source);
        let mut event = Event::new(event_id(), parts.source, parts.type_);
        event.time = Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        event.datacontenttype = parts.content_type;
        event.data = (!parts.data.is_empty()).then_some(parts.data);
        let sent = match &source.sink {
            Sink::Broker(broker) => self
                .ingress
                .ingest(broker, vec![event])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            sink => {
                let delivery = Delivery {
                    retry: PING_RETRIES,
                    ..Delivery::default()
                };
                self.dispatcher.send(sink, &event, &delivery).await
            }
        };
        if let Err(reason) = sent {
            tracing::warn!(source = %source.name, %reason, "ping event not delivered");
        }
    }
}

/// What a put does to a stored record (its creation time already carried over).
fn outcome<T: PartialEq>(existing: Option<&T>, new: &T) -> ApplyOutcome {
    match existing {
        None => ApplyOutcome::Created,
        Some(existing) if existing == new => ApplyOutcome::Unchanged,
        Some(_) => ApplyOutcome::Configured,
    }
}

/// A random event id, 128 bits in hex.
fn event_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
