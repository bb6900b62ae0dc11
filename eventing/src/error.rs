//! Errors of the eventing crate: the log's, and the ones a sender of a bad event hears.

/// The storage engine's own error. Shared, because one failed write transaction answers every
/// append folded into it.
pub type StoreError = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// What went wrong with the event log, naming the broker or subscriber concerned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventLogError {
    /// The log's file cannot be opened.
    #[error("event log: cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: StoreError,
    },
    /// The store failed (disk full, corrupt file, ...).
    #[error("event log: {0}")]
    Store(#[source] StoreError),
    /// A stored event could not be decoded (written by an incompatible version, or damaged).
    #[error("event log: stored event is unreadable: {0}")]
    Corrupt(String),
    /// The log is closed (the daemon is shutting down).
    #[error("the event log is closed")]
    Closed,
}

/// Why a request (or a subscriber's reply) does not carry a valid CloudEvent. The message is
/// what the sender reads in the 400 body: it names the attribute and says what to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The request is in no CloudEvents mode at all.
    #[error(
        "not a CloudEvent: no ce-specversion header (binary mode) and Content-Type '{content_type}' is neither \
         application/cloudevents+json nor application/cloudevents-batch+json"
    )]
    NotCloudEvent { content_type: String },
    /// A structured mode in a format other than JSON.
    #[error("event format '{0}' is not supported; send application/cloudevents+json or binary mode")]
    UnsupportedFormat(String),
    /// A required attribute is absent or empty.
    #[error("missing required attribute '{0}': every CloudEvent needs id, source, specversion and type")]
    Missing(&'static str),
    /// A specversion other than 1.0.
    #[error("specversion '{0}' is not supported; send specversion 1.0")]
    SpecVersion(String),
    /// An attribute name outside the CloudEvents rules.
    #[error("invalid attribute name '{0}': names are lowercase letters a-z and digits 0-9 only")]
    AttributeName(String),
    /// An attribute name that may not be used for an extension.
    #[error("attribute name '{0}' is reserved by CloudEvents and cannot be an extension")]
    ReservedName(String),
    /// The same attribute given twice.
    #[error("attribute '{0}' is given more than once")]
    Duplicate(String),
    /// An attribute value of the wrong type or shape.
    #[error("attribute '{name}': {reason}")]
    AttributeValue { name: String, reason: String },
    /// A binary-mode header value that is not percent-encoded UTF-8.
    #[error("header '{0}' is not valid percent-encoded UTF-8")]
    HeaderValue(String),
    /// A structured or batched body that is not the JSON expected (serde's message has the line
    /// and column).
    #[error("malformed JSON: {0}")]
    Json(String),
    /// Both `data` and `data_base64` in one structured event.
    #[error("event has both 'data' and 'data_base64'; send one of them")]
    BothData,
    /// `data_base64` that does not decode.
    #[error("'data_base64' is not valid base64: {0}")]
    Base64(String),
    /// More extension attributes than `[eventing] max-extensions`.
    #[error(
        "the event has more than {limit} extension attributes; send at most {limit} ([eventing] max-extensions in rouse.toml)"
    )]
    TooManyExtensions { limit: usize },
    /// Attributes larger than `[eventing] max-attribute-bytes`.
    #[error(
        "the event's attributes (names and values, all but data) exceed {limit} bytes; move large values into data \
         ([eventing] max-attribute-bytes in rouse.toml)"
    )]
    AttributesTooLarge { limit: usize },
    /// A batch longer than `[eventing] max-batch-events`.
    #[error("the batch holds more than {limit} events; split it ([eventing] max-batch-events in rouse.toml)")]
    BatchTooLong { limit: usize },
    /// A batch with no event in it.
    #[error("empty batch: send a JSON array with at least one event")]
    EmptyBatch,
    /// One event of a batch is invalid (the batch is refused whole).
    #[error("event {index} of the batch (counting from 0): {error}")]
    InBatch { index: usize, error: Box<EventError> },
}

impl EventError {
    /// The HTTP status a sender gets: 413 for limits on size, 400 for everything else.
    pub fn status(&self) -> http::StatusCode {
        match self {
            EventError::AttributesTooLarge { .. } | EventError::BatchTooLong { .. } => {
                http::StatusCode::PAYLOAD_TOO_LARGE
            }
            EventError::InBatch { error, .. } => error.status(),
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// Why events could not be put into a broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// No broker of that name is registered.
    #[error("broker '{0}' does not exist")]
    UnknownBroker(String),
    /// The event log failed; the events are not stored.
    #[error(transparent)]
    Log(#[from] EventLogError),
}
