//! The admin API: JSON over HTTP on loopback, every route behind the bearer token.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /healthz` | 200 `ok`, or 503 naming what cannot write (no token needed) |
//! | `GET /metrics` | Prometheus metrics (no token needed) |
//! | `GET /v1/services` | describes every service |
//! | `GET /v1/services/{name}` | describes one service |
//! | `PUT /v1/services/{name}` | deploys: creates or updates ([`DeployRequest`]) |
//! | `DELETE /v1/services/{name}` | deletes; answers once every instance is gone |
//! | `GET /v1/services/{name}/revisions` | the service's Knative Revision objects |
//! | `PUT /v1/services/{name}/traffic` | changes traffic shares and tags ([`TrafficChange`]) |
//! | `DELETE /v1/services/{name}/revisions/{revision}` | abandons a revision that never became ready |
//! | `GET /v1/services/{name}/logs?follow=&tail=` | instance output, each line prefixed by the instance |
//! | `POST /v1/apply` | applies a manifest's documents, all or nothing ([`ApplyDocument`]) |
//! | `POST /v1/images/pull` | pulls an image ([`PullRequest`]); streams [`PullEvent`] lines |
//! | `POST /v1/images/build?tag=&dockerfile=` | builds the tar context in the body; streams [`BuildEvent`] lines |
//! | `GET /v1/brokers`, `GET`/`PUT`/`DELETE /v1/brokers/{name}` | brokers (Knative Broker objects) |
//! | `GET /v1/triggers`, `GET`/`PUT`/`DELETE /v1/triggers/{name}` | triggers |
//! | `GET /v1/pingsources`, `GET`/`PUT`/`DELETE /v1/pingsources/{name}` | ping sources |
//! | `GET`/`POST /v1/secrets`, `GET`/`PUT`/`PATCH`/`DELETE /v1/secrets/{name}` | secrets: keys and sizes out, never values ([`DataSummary`]); `POST` creates, `PATCH` changes keys ([`DataChange`]) |
//! | `GET`/`POST /v1/configmaps`, `GET`/`PUT`/`PATCH`/`DELETE /v1/configmaps/{name}` | config maps, whole ([`DataObject`]) |

use rouse_api::annotations::{CLUSTER_LOCAL, VISIBILITY};
use rouse_api::rollout::{ROLLOUT_DURATION, parse_rollout_duration};
use std::sync::Arc;

use axum::body::{Body, HttpBody as _};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{StatusCode, header};
use prometheus_client::registry::Registry;
use rouse_api::ValidationError;
use rouse_api::eventing::{Broker, PingSource, Trigger};
use rouse_api::eventing_knative::{KBroker, KPingSource, KTrigger};
use rouse_api::knative::KRevision;
use rouse_api::name::validate_name;
use rouse_api::secret::{DataChange, DataKind, DataObject};
use rouse_api::status::{
    BuildEvent, DeployRequest, DeployResponse, PullEvent, PullPolicy, PullRequest, ServiceDescription,
};
use rouse_api::traffic::TrafficChange;
use rouse_runtime::{LogOptions, LogStream, RegistryAuth, RuntimeError};
use serde::Deserialize;

use crate::apply::{Applied, ApplyDocument, ApplyOutcome};
use crate::describe::{describe, revision_objects, service_url};
use crate::error::{ControlError, ErrorBody, ObjectKind};
use crate::eventing::Eventing;
use crate::serving::{Metadata, Serving};

/// Largest request body the admin API reads: a secret or config map of the largest size
/// (1 MiB), in base64 JSON, with room to spare.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the admin API handlers share.
pub(crate) struct Admin {
    pub serving: Arc<Serving>,
    /// The bearer token every request must carry.
    pub token: String,
    /// Domain of service URLs.
    pub domain: String,
    /// Port of the ingress, for service URLs.
    pub ingress_port: u16,
    /// Everything `/metrics` exports.
    pub metrics: Arc<Registry>,
    pub eventing: Arc<Eventing>,
}

/// The admin API router.
pub(crate) fn router(admin: Arc<Admin>) -> Router {
    let v1 = Router::new()
        .route("/v1/services", get(list_services))
        .route(
            "/v1/services/{name}",
            get(get_service).put(deploy).delete(delete_service),
        )
        .route("/v1/services/{name}/revisions", get(list_revisions))
        .route("/v1/services/{name}/traffic", put(change_traffic))
        .route("/v1/services/{name}/revisions/{revision}", delete(abandon_revision))
        .route("/v1/services/{name}/logs", get(logs))
        .route("/v1/apply", post(apply))
        .route("/v1/brokers", get(list_brokers))
        .route(
            "/v1/brokers/{name}",
            get(get_broker).put(put_broker).delete(delete_broker),
        )
        .route("/v1/triggers", get(list_triggers))
        .route(
            "/v1/triggers/{name}",
            get(get_trigger).put(put_trigger).delete(delete_trigger),
        )
        .route("/v1/images/pull", post(pull_image))
        .merge(data_routes("/v1/secrets", DataKind::Secret))
        .merge(data_routes("/v1/configmaps", DataKind::ConfigMap))
        .route("/v1/pingsources", get(list_ping_sources))
        .route(
            "/v1/pingsources/{name}",
            get(get_ping_source).put(put_ping_source).delete(delete_ping_source),
        )
        .layer(middleware::from_fn_with_state(admin.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(ErrorBody {
                    error: "no such admin API route".to_string(),
                }),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(reject_oversized))
        // Added after the small-body limit, so it has its own: a build context is a tar.
        .merge(
            Router::new()
                .route("/v1/images/build", post(build_image))
                .layer(DefaultBodyLimit::max(MAX_BUILD_CONTEXT_BYTES))
                .layer(middleware::from_fn_with_state(admin.clone(), require_token)),
        )
        .with_state(admin)
}

/// The routes of one kind of data object, under `collection`.
fn data_routes(collection: &str, kind: DataKind) -> Router<Arc<Admin>> {
    Router::new()
        .route(
            collection,
            get(move |s| list_data(s, kind)).post(move |s, b| create_data(s, kind, b)),
        )
        .route(
            &format!("{collection}/{{name}}"),
            get(move |s, n| get_data(s, kind, n))
                .put(move |s, n, b| put_data(s, kind, n, b))
                .patch(move |s, n, b| change_data(s, kind, n, b))
                .delete(move |s, n| delete_data(s, kind, n)),
        )
}

/// Largest build context `rouse deploy --source` may send.
pub(crate) const MAX_BUILD_CONTEXT_BYTES: usize = 512 * 1024 * 1024;

/// Query of `POST /v1/images/build`.
#[derive(Deserialize)]
struct BuildQuery {
    tag: String,
    #[serde(default = "default_dockerfile")]
    dockerfile: String,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_string()
}

/// Builds the tar build context in the body and tags the image, answering with the build's
/// output as newline-delimited [`BuildEvent`]s, the last one `built` or `failed`.
async fn build_image(
    State(admin): State<Arc<Admin>>,
    Query(query): Query<BuildQuery>,
    context: Bytes,
) -> Result<Response, ControlError> {
    let BuildQuery { tag, dockerfile } = query;
    if tag.is_empty() || tag.chars().any(char::is_whitespace) {
        return Err(
            ValidationError::new("tag", &tag, "must be an image reference, e.g. rouse.local/web:1a2b3c").into(),
        );
    }
    let runtime = admin.serving.runtime().clone();
    let steps = runtime.build(context, &dockerfile, &tag).map(|step| match step {
        Ok(text) => BuildEvent::Output { text },
        Err(e) => BuildEvent::Failed { message: e.to_string() },
    });
    let last = futures_util::stream::once(async move {
        match runtime.resolve_image(&tag).await {
            Ok(Some(built)) => BuildEvent::Built { id: built.id },
            Ok(None) => BuildEvent::Failed {
                message: format!("the build ended but the engine has no image {tag}"),
            },
            Err(e) => BuildEvent::Failed { message: e.to_string() },
        }
    });
    Ok(ndjson(through_failure(steps.chain(last), |event| {
        matches!(event, BuildEvent::Failed { .. })
    })))
}

/// 200 `ok` when the daemon can serve and store, 503 with the reasons when it cannot (a full
/// disk); warnings (records skipped as unreadable) follow either, one per line.
async fn healthz(State(admin): State<Arc<Admin>>) -> Response {
    let health = admin.eventing.health().await;
    let (status, mut text) = if health.problems.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string())
    };
    for line in health.problems.iter().chain(&health.warnings) {
        text.push_str(line);
        text.push('\n');
    }
    (status, text).into_response()
}

/// Answers 413 to a request whose declared length is over the limit before reading any of
/// it, so a client that sent `Expect: 100-continue` never uploads the body; a chunked body
/// that grows past the limit is stopped by `DefaultBodyLimit`, and gets the same JSON error.
async fn reject_oversized(request: Request, next: Next) -> Response {
    let too_large = |size: &str| {
        let error = format!("the request body is {size}; the admin API takes at most {MAX_BODY_BYTES} bytes");
        (StatusCode::PAYLOAD_TOO_LARGE, Json(ErrorBody { error })).into_response()
    };
    // A declared length is the body's exact size hint.
    let declared = request.body().size_hint().lower();
    if declared > MAX_BODY_BYTES as u64 {
        return too_large(&format!("{declared} bytes"));
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large("over the limit")
    } else {
        response
    }
}

async fn require_token(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), admin.token.as_bytes()) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(ErrorBody {
                error: "missing or wrong bearer token; the token is in $ROUSE_HOME/token".to_string(),
            }),
        )
            .into_response(),
    }
}

/// Compares without stopping at the first difference, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Admin {
    fn describe(&self, name: &str) -> Result<ServiceDescription, ControlError> {
        let store = self.serving.store();
        let service = store
            .service(name)?
            .ok_or_else(|| ControlError::not_found(ObjectKind::Service, name.to_string()))?;
        let revisions = store.revisions_of(name)?;
        Ok(describe(
            &self.serving,
            &service,
            revisions,
            service_url(name, &self.domain, self.ingress_port),
            |label| service_url(label, &self.domain, self.ingress_port),
        ))
    }
}

/// Prometheus text format; no token needed (the API listens on loopback only).
async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &admin.metrics) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn list_services(State(admin): State<Arc<Admin>>) -> Result<Json<Vec<ServiceDescription>>, ControlError> {
    let services = admin.serving.store().services()?;
    let described = services
        .iter()
        .map(|s| admin.describe(&s.name))
        .collect::<Result<_, _>>()?;
    Ok(Json(described))
}

async fn get_service(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<ServiceDescription>, ControlError> {
    Ok(Json(admin.describe(&name)?))
}

async fn list_revisions(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<KRevision>>, ControlError> {
    let store = admin.serving.store();
    let service = store
        .service(&name)?
        .ok_or_else(|| ControlError::not_found(ObjectKind::Service, name.clone()))?;
    Ok(Json(revision_objects(
        &admin.serving,
        &service,
        store.revisions_of(&name)?,
    )))
}

async fn change_traffic(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Json(change): Json<TrafficChange>,
) -> Result<Json<ServiceDescription>, ControlError> {
    admin.serving.change_traffic(&name, &change)?;
    Ok(Json(admin.describe(&name)?))
}

async fn deploy(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Json(request): Json<DeployRequest>,
) -> Result<Response, ControlError> {
    validate_name("service name", &name)?;
    request.template.validate()?;
    admin.serving.check_fits_host(&request.template)?;
    admin
        .serving
        .data()
        .check_refs(&request.template, &Default::default())?;
    let metadata = deploy_metadata(&admin, &name, &request)?;
    let mut template = request.template;
    let kept = match admin.serving.store().service(&name)? {
        Some(current) if request.keep_image && request.lock_to_digest && current.template.image == template.image => {
            current.template.image_digest
        }
        _ => None,
    };
    match kept {
        Some(pin) => {
            template.image_digest = Some(pin);
            admin.serving.check_non_root(&template).await?;
        }
        None => admin.serving.pin_image(&mut template, request.lock_to_digest).await?,
    }
    let (_, revision) = admin
        .serving
        .deploy(&name, template, request.revision_name.as_deref(), metadata)?;
    let status = if revision.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let response = DeployResponse {
        service: admin.describe(&name)?,
        created_revision: revision.map(|r| r.name),
    };
    Ok((status, Json(response)).into_response())
}

/// The service's labels and annotations after a deploy's `--cluster-local` (the one label)
/// and `--rollout-duration` (the one annotation), the others kept; `None` when it sets
/// neither.
fn deploy_metadata(admin: &Admin, name: &str, request: &DeployRequest) -> Result<Option<Metadata>, ControlError> {
    if request.cluster_local.is_none() && request.rollout_duration.is_none() {
        return Ok(None);
    }
    let mut metadata = admin
        .serving
        .store()
        .service(name)?
        .map(|s| Metadata {
            labels: s.labels,
            annotations: s.annotations,
        })
        .unwrap_or_default();
    match request.cluster_local {
        Some(true) => {
            metadata
                .labels
                .insert(VISIBILITY.to_string(), CLUSTER_LOCAL.to_string());
        }
        Some(false) => {
            metadata.labels.remove(VISIBILITY);
        }
        None => {}
    }
    match request.rollout_duration.as_deref() {
        Some("" | "0") => {
            metadata.annotations.remove(ROLLOUT_DURATION);
        }
        Some(duration) => {
            parse_rollout_duration(duration).map_err(|e| ValidationError {
                field: "--rollout-duration".to_string(),
                ..e
            })?;
            metadata
                .annotations
                .insert(ROLLOUT_DURATION.to_string(), duration.to_string());
        }
        None => {}
    }
    Ok(Some(metadata))
}

async fn apply(
    State(admin): State<Arc<Admin>>,
    Json(documents): Json<Vec<ApplyDocument>>,
) -> Result<Json<Vec<Applied>>, ControlError> {
    Ok(Json(
        crate::apply::apply(&admin.serving, &admin.eventing, documents).await?,
    ))
}

/// 201 for a new resource, 200 for an updated or unchanged one.
fn put_answer<T: serde::Serialize>((object, outcome): (T, ApplyOutcome)) -> Response {
    let status = if outcome == ApplyOutcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(object)).into_response()
}

async fn list_brokers(State(admin): State<Arc<Admin>>) -> Result<Json<Vec<KBroker>>, ControlError> {
    Ok(Json(admin.eventing.brokers()?))
}

async fn get_broker(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Result<Json<KBroker>, ControlError> {
    Ok(Json(admin.eventing.broker(&name)?))
}

async fn put_broker(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Json(broker): Json<Broker>,
) -> Result<Response, ControlError> {
    Ok(put_answer(admin.eventing.put_broker(&name, broker).await?))
}

async fn delete_broker(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Result<StatusCode, ControlError> {
    admin.eventing.delete_broker(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_triggers(State(admin): State<Arc<Admin>>) -> Result<Json<Vec<KTrigger>>, ControlError> {
    Ok(Json(admin.eventing.triggers()?))
}

async fn get_trigger(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<KTrigger>, ControlError> {
    Ok(Json(admin.eventing.trigger(&name)?))
}

async fn put_trigger(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Json(trigger): Json<Trigger>,
) -> Result<Response, ControlError> {
    Ok(put_answer(admin.eventing.put_trigger(&name, trigger).await?))
}

async fn delete_trigger(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Result<StatusCode, ControlError> {
    admin.eventing.delete_trigger(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_ping_sources(State(admin): State<Arc<Admin>>) -> Result<Json<Vec<KPingSource>>, ControlError> {
    Ok(Json(admin.eventing.ping_sources()?))
}

async fn get_ping_source(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<KPingSource>, ControlError> {
    Ok(Json(admin.eventing.ping_source(&name)?))
}

async fn put_ping_source(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Json(source): Json<PingSource>,
) -> Result<Response, ControlError> {
    Ok(put_answer(admin.eventing.put_ping_source(&name, source)?))
}

async fn delete_ping_source(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    admin.eventing.delete_ping_source(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// What users may read of one: a secret's keys and sizes, a config map whole.
fn data_view(admin: &Admin, kind: DataKind, name: &str) -> Result<serde_json::Value, ControlError> {
    let data = admin.serving.data();
    let missing = || ControlError::not_found(ObjectKind::from(kind), name);
    let view = match kind {
        DataKind::Secret => serde_json::to_value(data.summary(kind, name)?.ok_or_else(missing)?),
        DataKind::ConfigMap => serde_json::to_value(data.get(kind, name)?.ok_or_else(missing)?),
    };
    Ok(view.expect("records serialize"))
}

async fn list_data(State(admin): State<Arc<Admin>>, kind: DataKind) -> Result<Json<serde_json::Value>, ControlError> {
    let data = admin.serving.data();
    let list = match kind {
        DataKind::Secret => serde_json::to_value(data.summaries(kind)?),
        DataKind::ConfigMap => serde_json::to_value(data.config_maps()?),
    };
    Ok(Json(list.expect("records serialize")))
}

async fn get_data(
    State(admin): State<Arc<Admin>>,
    kind: DataKind,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ControlError> {
    Ok(Json(data_view(&admin, kind, &name)?))
}

/// The body's object, which must be of the route's kind (and name, when the route has one).
fn checked_object(kind: DataKind, name: Option<&str>, object: DataObject) -> Result<DataObject, ControlError> {
    if object.kind != kind {
        return Err(ValidationError::new(
            "dataKind",
            object.kind.word(),
            format!("this route takes a {}", kind.word()),
        )
        .into());
    }
    if let Some(name) = name.filter(|n| *n != object.name) {
        return Err(ValidationError::new(
            "name",
            &object.name,
            format!("differs from the name in the path, {name}"),
        )
        .into());
    }
    Ok(object)
}

async fn create_data(
    State(admin): State<Arc<Admin>>,
    kind: DataKind,
    Json(object): Json<DataObject>,
) -> Result<Response, ControlError> {
    let object = checked_object(kind, None, object)?;
    let name = object.name.clone();
    admin.serving.data().create(object)?;
    Ok((StatusCode::CREATED, Json(data_view(&admin, kind, &name)?)).into_response())
}

async fn put_data(
    State(admin): State<Arc<Admin>>,
    kind: DataKind,
    Path(name): Path<String>,
    Json(object): Json<DataObject>,
) -> Result<Response, ControlError> {
    let object = checked_object(kind, Some(&name), object)?;
    let (_, outcome) = admin.serving.data().put(object)?;
    Ok(put_answer((data_view(&admin, kind, &name)?, outcome)))
}

async fn change_data(
    State(admin): State<Arc<Admin>>,
    kind: DataKind,
    Path(name): Path<String>,
    Json(change): Json<DataChange>,
) -> Result<Json<serde_json::Value>, ControlError> {
    admin.serving.data().update(kind, &name, change.set, &change.remove)?;
    Ok(Json(data_view(&admin, kind, &name)?))
}

async fn delete_data(
    State(admin): State<Arc<Admin>>,
    kind: DataKind,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    if admin.serving.data().delete(kind, &name)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::not_found(ObjectKind::from(kind), name))
    }
}

async fn delete_service(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Result<StatusCode, ControlError> {
    if admin.serving.delete_service(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::not_found(ObjectKind::Service, name))
    }
}

async fn abandon_revision(
    State(admin): State<Arc<Admin>>,
    Path((name, revision)): Path<(String, String)>,
) -> Result<StatusCode, ControlError> {
    admin.serving.abandon_revision(&name, &revision).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
}

/// Pulls an image into the engine (as `policy` says), answering with the pull's steps as
/// newline-delimited [`PullEvent`]s: the status is 200 before the registry has answered, so
/// a failure is the last line, not the status.
async fn pull_image(
    State(admin): State<Arc<Admin>>,
    Json(request): Json<PullRequest>,
) -> Result<Response, ControlError> {
    let PullRequest { image, policy, auth } = request;
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        return Err(ValidationError::new(
            "image",
            &image,
            "must be an image reference, e.g. localhost:5000/app:v1",
        )
        .into());
    }
    let runtime = admin.serving.runtime().clone();
    if policy != PullPolicy::Always
        && let Some(present) = runtime.resolve_image(&image).await?
    {
        return Ok(ndjson(futures_util::stream::iter([PullEvent::Present {
            id: present.id,
        }])));
    }
    if policy == PullPolicy::Never {
        return Err(RuntimeError::ImageNotFound { image }.into());
    }
    let auth = auth.map(|a| RegistryAuth {
        server: a.server,
        username: a.username,
        password: a.password,
        identity_token: a.identity_token,
    });
    let steps = runtime.pull(&image, auth).map(|step| match step {
        Ok(p) => PullEvent::Progress {
            layer: p.layer,
            status: p.status,
            current: p.current,
            total: p.total,
        },
        Err(e) => PullEvent::Failed { message: e.to_string() },
    });
    // After the last step, what the engine now has under the name (or why not).
    let last = futures_util::stream::once(async move {
        match runtime.resolve_image(&image).await {
            Ok(Some(pulled)) => PullEvent::Pulled { id: pulled.id },
            Ok(None) => PullEvent::Failed {
                message: format!("the pull of '{image}' ended but the engine has no such image"),
            },
            Err(e) => PullEvent::Failed { message: e.to_string() },
        }
    });
    Ok(ndjson(through_failure(steps.chain(last), |event| {
        matches!(event, PullEvent::Failed { .. })
    })))
}

/// `events` up to and with the first failure: a pull's or a build's answer ends with why it
/// failed, and nothing after it (not the final check of what the engine has).
fn through_failure<E: Send + 'static>(
    events: impl futures_util::Stream<Item = E> + Send + 'static,
    is_failure: fn(&E) -> bool,
) -> impl futures_util::Stream<Item = E> + Send + 'static {
    let mut failed = false;
    events.take_while(move |event| {
        let go_on = !failed;
        failed |= is_failure(event);
        futures_util::future::ready(go_on)
    })
}

/// A streamed answer of one JSON object per line.
fn ndjson<T: serde::Serialize>(events: impl futures_util::Stream<Item = T> + Send + 'static) -> Response {
    let lines = events.map(|event| {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn logs(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ControlError> {
    if admin.serving.store().service(&name)?.is_none() {
        return Err(ControlError::not_found(ObjectKind::Service, name));
    }
    let options = LogOptions {
        follow: query.follow,
        tail: query.tail,
    };
    let mut streams = Vec::new();
    for instance in admin.serving.instances_of(&name).await? {
        let Ok(lines) = admin.serving.runtime().logs(&instance.id, options).await else {
            continue;
        };
        let prefix = instance.name.clone();
        streams.push(lines.map(move |line| {
            let text = match line {
                Ok(line) => {
                    let stream = if line.stream == LogStream::Stderr {
                        " stderr"
                    } else {
                        ""
                    };
                    format!("[{prefix}{stream}] {}\n", line.line)
                }
                Err(e) => format!("[{prefix}] (log stream ended: {e})\n"),
            };
            Ok::<_, std::io::Error>(Bytes::from(text))
        }));
    }
    // Lines of one instance stay in order; instances interleave as they write.
    let body = Body::from_stream(futures_util::stream::select_all(streams));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
