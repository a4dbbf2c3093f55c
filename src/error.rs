//! Errors of the broker and their one mapping to Kafka error codes ([`Error::kafka`]) and
//! to gRPC status codes ([`Error::grpc`]).

use std::sync::Arc;

use kafka_protocol::ResponseError as Code;

use stratus_log::batch::BatchError;
use stratus_log::objects::ObjectError;
use stratus_meta::MetaError;

/// An error while serving a request, mapped to a Kafka error code by [`Error::code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kafka error decided by a handler.
    #[error("{0:?}")]
    Kafka(Code),
    /// A record batch failed validation.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The object store failed.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// Data could not be made durable; the write was not acknowledged. `cause` is the
    /// failure behind it (shared: one failed flush fails every write in it).
    #[error("write not durable: {reason}")]
    NotDurable {
        /// What was not made durable.
        reason: &'static str,
        /// The failure behind it, if one is known.
        #[source]
        cause: Option<Arc<Error>>,
    },
}

impl From<Code> for Error {
    fn from(c: Code) -> Self {
        Error::Kafka(c)
    }
}

impl Error {
    /// A write not made durable, with no known cause (the broker is stopping).
    pub fn not_durable(reason: &'static str) -> Self {
        Error::NotDurable {
            reason,
            cause: None,
        }
    }

    /// A write not made durable because of `cause`.
    pub fn not_durable_by(reason: &'static str, cause: &Arc<Error>) -> Self {
        Error::NotDurable {
            reason,
            cause: Some(cause.clone()),
        }
    }

    /// The gRPC status code the admin API answers with for this error.
    pub fn grpc(&self) -> tonic::Code {
        match self {
            Error::Kafka(Code::UnknownTopicOrPartition) => tonic::Code::NotFound,
            Error::Kafka(c) if c.is_retriable() => tonic::Code::Unavailable,
            Error::Kafka(_) => tonic::Code::FailedPrecondition,
            Error::Batch(_) | Error::Meta(MetaError::TooLarge(_)) => tonic::Code::InvalidArgument,
            Error::Meta(MetaError::Corrupt { .. }) => tonic::Code::DataLoss,
            Error::Meta(MetaError::Locked(_)) => tonic::Code::FailedPrecondition,
            Error::Meta(_) | Error::Object(_) | Error::NotDurable { .. } => {
                tonic::Code::Unavailable
            }
        }
    }

    /// The Kafka error code a client receives for this error.
    pub fn code(&self) -> i16 {
        self.kafka().code()
    }

    /// The Kafka error for this error.
    pub fn kafka(&self) -> Code {
        match self {
            Error::Kafka(c) => *c,
            Error::Batch(BatchError::Corrupt(_)) => Code::CorruptMessage,
            Error::Batch(BatchError::UnsupportedMagic(_)) => Code::UnsupportedForMessageFormat,
            // Retriable: the client retries, and idempotence removes duplicates.
            Error::Meta(MetaError::TooLarge(_)) => Code::InvalidRequest,
            Error::Meta(_) | Error::Object(_) | Error::NotDurable { .. } => Code::KafkaStorageError,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.grpc(), chain(&e))
    }
}

/// An error and its causes, each once: "a: b: c".
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// A refused admin request (CreateTopics, DeleteTopics, CreatePartitions, configs): the
/// Kafka error and the message the client shows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// The Kafka error.
    pub code: Code,
    /// What the client shows.
    pub message: String,
}

impl AdminError {
    /// A refusal with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        AdminError {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for AdminError {
    fn from(e: Error) -> Self {
        AdminError::new(e.kafka(), chain(&e))
    }
}

impl From<MetaError> for AdminError {
    fn from(e: MetaError) -> Self {
        Error::Meta(e).into()
    }
}

/// Result of broker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
