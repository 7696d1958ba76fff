//! What the ingest API answers and takes, as types: the handler builds the answers, and the
//! OpenAPI document is made from these types and the handler's annotation. Events are checked
//! by the ETL's contract (`dataflow_contract`), not by these types: `IngestEvent` describes that
//! contract for clients.

use dataflow_ingest::Rejection;
use serde::Serialize;
use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, SchemaType, Type,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// `POST /events`: accepted events are durable; rejected ones are listed with their reasons.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ingested {
    /// Events durable in the delivery stream.
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
}

/// A refused request: the error shape, and the rejected events when none passed the contract.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestError {
    pub error: String,
    pub message: String,
    /// Each event's reason, on `no_valid_events`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub rejected: Option<Vec<Rejection>>,
}

/// One event (docs/event-contract.md).
#[derive(ToSchema)]
#[allow(dead_code)] // describes the contract the parser applies
pub struct IngestEvent {
    #[schema(nullable = false)]
    event_id: Option<String>,
    /// A non-empty string, or an integer (kept as its decimal digits).
    #[schema(schema_with = user_id)]
    user_id: String,
    /// Not empty or whitespace-only; at most 256 bytes of UTF-8 (`event_type_too_long`).
    #[schema(min_length = 1, max_length = 256, pattern = r"\S")]
    event_type: String,
    /// Event time; it must also fall in the accepted window (`ETL_MIN_DATE` .. now +
    /// `ETL_MAX_FUTURE`), else the event is rejected as `timestamp_out_of_range`.
    #[schema(schema_with = timestamp)]
    timestamp: String,
    #[schema(value_type = Option<Object>, nullable = false)]
    properties: Option<serde_json::Value>,
}

fn user_id() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Integer]))
        .min_length(Some(1))
        .description(Some(
            "A non-empty string, or an integer (kept as its decimal digits).",
        ))
}

fn timestamp() -> AnyOfBuilder {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("Milliseconds since the epoch.")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(
                    "^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]",
                ))
                .description(Some(
                    "RFC 3339 (with `Z` or an offset) or ISO 8601 without an offset, taken as UTC.",
                )),
        )
        .description(Some(
            "Event time; it must also fall in the accepted window (`ETL_MIN_DATE` .. now + `ETL_MAX_FUTURE`), else the event is rejected as `timestamp_out_of_range`.",
        ))
}

/// A JSON body: one event, or an array of 1 to 10,000.
pub struct Events;

impl PartialSchema for Events {
    fn schema() -> RefOr<Schema> {
        let one = || Ref::from_schema_name(IngestEvent::name());
        OneOfBuilder::new()
            .item(one())
            .item(
                ArrayBuilder::new()
                    .items(one())
                    .min_items(Some(1))
                    .max_items(Some(dataflow_ingest::MAX_EVENTS)),
            )
            .into()
    }
}

impl ToSchema for Events {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((IngestEvent::name().into_owned(), IngestEvent::schema()));
    }
}

/// A JSON Lines body.
pub struct JsonLines;

impl PartialSchema for JsonLines {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .description(Some("JSON Lines: one event per line."))
            .into()
    }
}

impl ToSchema for JsonLines {}

#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Encoding {
    Gzip,
    Identity,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes the header the handler reads
pub struct Headers {
    /// `gzip` for a compressed body.
    #[param(rename = "Content-Encoding", inline, required = false)]
    content_encoding: Encoding,
}
