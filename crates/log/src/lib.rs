//! Stratus's storage layer, below the broker: the formats of what is written and how it is
//! named and read.
//!
//! - [`batch`]: Kafka record batches (v2): validation, stamping offsets, iteration;
//! - [`segment`]: sealed segments (batches, then an offset/time index and a footer);
//! - [`wal_format`]: the WAL object format (batches of many partitions, then a versioned
//!   footer naming each partition's range);
//! - [`paths`]: every object name, built and parsed in one place;
//! - [`objects`]: the object store (object_store backends by URL, local fsync, counters);
//! - [`budget`]: the pace of background writes to a local directory, set by the foreground's;
//! - [`bulk`]: large objects streamed to the store a part at a time (sealed segments);
//! - [`cache`]: the read cache (memory, then local disk, then ranged GETs);
//! - [`file_slice`]: runs of whole batches of a local segment file, for `sendfile`;
//! - [`pool`]: reused buffers for ranged reads of a local store;
//! - `s3`: an S3 store from its URL and the `AWS_*` variables (payload unsigned over https);
//! - [`clock`]: wall-clock time, injectable so that time-driven jobs can be tested.
//!
//! It owns no broker state and may not see the broker, the metadata store or the
//! protocol handlers.

pub mod batch;
pub mod budget;
pub mod bulk;
pub mod cache;
pub mod clock;
pub mod file_slice;
mod handles;
mod local;
pub mod objects;
pub mod paced;
pub mod paths;
pub mod pool;
mod s3;
pub mod segment;
pub mod spares;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod wal_format;
