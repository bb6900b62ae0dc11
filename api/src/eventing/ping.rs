//! Ping sources: their data (JSON or text) and their checks.

use base64::Engine as _;

use crate::error::ValidationError;
use crate::name::validate_name;

/// The broker that exists from the start.
use super::*;

impl PingData {
    /// The bytes the event carries: the text as is, or the base64 decoded.
    pub fn payload(&self) -> Result<Vec<u8>, String> {
        match self {
            PingData::Text(text) => Ok(text.as_bytes().to_vec()),
            PingData::Base64(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("not valid base64 (standard alphabet, with '=' padding): {e}")),
        }
    }
}

/// Whether a content type is JSON (`application/json`, with or without parameters).
pub(super) fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Checks a ping payload: not empty, decodable, and JSON when the content type says so.
pub(crate) fn check_ping_data(field: &str, content_type: Option<&str>, data: &PingData) -> Result<(), ValidationError> {
    let given = match data {
        PingData::Text(text) | PingData::Base64(text) => text,
    };
    if given.is_empty() {
        return Err(ValidationError::new(
            field,
            "",
            "is empty; give the payload or leave the field out",
        ));
    }
    let payload = data
        .payload()
        .map_err(|reason| ValidationError::new(field, given, reason))?;
    if is_json(content_type) && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return Err(ValidationError::new(
            field,
            given,
            "the content type is application/json but this is not JSON; fix the JSON or change contentType",
        ));
    }
    Ok(())
}

/// Checks what can be checked of a schedule without parsing it (the eventing crate parses it).
pub(crate) fn check_schedule(field: &str, schedule: &str) -> Result<(), ValidationError> {
    if schedule.trim().is_empty() {
        return Err(ValidationError::new(
            field,
            schedule,
            "a cron schedule is required, e.g. \"*/5 * * * *\" (every five minutes)",
        ));
    }
    if schedule.contains("@every") {
        return Err(ValidationError::new(
            field,
            schedule,
            "@every is not supported (nor is it in Knative); write a cron schedule, e.g. \"*/5 * * * *\"",
        ));
    }
    Ok(())
}

impl PingSource {
    /// Checks the name, schedule (lightly), time zone, payload and sink.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        check_labels("labels", &self.labels)?;
        check_schedule("schedule", &self.schedule)?;
        if let Some(zone) = &self.timezone
            && (zone.is_empty() || zone.contains(char::is_whitespace))
        {
            return Err(ValidationError::new(
                "timezone",
                zone,
                "must be an IANA time zone name, e.g. Europe/Berlin; leave it out for UTC",
            ));
        }
        if let Some(content_type) = &self.content_type
            && (content_type.is_empty() || content_type.contains(char::is_control))
        {
            return Err(ValidationError::new(
                "content_type",
                content_type,
                "must be a media type, e.g. application/json; leave it out for none",
            ));
        }
        if let Some(data) = &self.data {
            check_ping_data("data", self.content_type.as_deref(), data)?;
        }
        self.sink.check("sink")
    }
}
