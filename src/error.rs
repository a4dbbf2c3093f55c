//! Errors of the broker and their one mapping to Kafka error codes.

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
    /// Data could not be made durable in time; the write was not acknowledged.
    #[error("write not durable: {0}")]
    NotDurable(String),
}

impl From<Code> for Error {
    fn from(c: Code) -> Self {
        Error::Kafka(c)
    }
}

impl Error {
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
            Error::Meta(_) | Error::Object(_) | Error::NotDurable(_) => Code::KafkaStorageError,
        }
    }
}

/// Result of broker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
