//! What can go wrong reading or writing the log.

use crate::codec::CodecError;
use crate::event::Offset;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt log entry at offset {offset}: {source}")]
    Corrupt {
        offset: Offset,
        #[source]
        source: CodecError,
    },
    /// A chunk whose length prefixes do not add up: the entries from
    /// `offset` on (to the end of that chunk) cannot be located.
    #[error("corrupt log chunk at offset {offset}: {detail}")]
    Framing { offset: Offset, detail: String },
    #[error("corrupt log key {0:?}")]
    BadKey(Vec<u8>),
    #[error("corrupt conversation index entry at key {0:?}")]
    BadIndex(Vec<u8>),
    /// Offsets within one batch must increase.
    #[error("batch offsets out of order: {offset} after {previous}")]
    OutOfOrder { offset: Offset, previous: Offset },
    #[error("unexpected log layout: {0}")]
    Layout(String),
    /// The per-conversation index's file (`log-index.redb`).
    #[error(transparent)]
    Index(#[from] crate::table_file::TableFileError),
    #[error(transparent)]
    Wal(#[from] super::wal::WalError),
    /// The projector could not write sled: the log takes no more appends.
    #[error("the projector stopped: {0}")]
    Projector(String),
}
