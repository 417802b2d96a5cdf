//! Storage steps as tasks of the backend's runtime ([`Storage::spawn_step`]):
//! what lets a loop driver or the `async` model ask the store without
//! parking a thread per call.
//!
//! Listings, sizes, opens and reads of a streamed body are async all the
//! way down: a step waiting for the store is a task holding a socket and a
//! timer. The spliced path ([`super::by_hand`]) moves bytes between
//! descriptors with blocking calls, so its reads run on the runtime's
//! bounded blocking threads ([`super::BLOCKING_THREADS`]).

use std::io;

use hftp_proto::{Range, SliceMode};

use super::{ObjectRange, ObjectStorage};
use crate::storage::{next_block, RangeReader, StorageError, StorageReply, StorageStep};

impl ObjectStorage {
    /// The step's reply, as [`StorageStep::execute`] would give it.
    pub(super) async fn run_step(self, step: StorageStep) -> StorageReply {
        match step {
            StorageStep::ListPage { cursor } => {
                StorageReply::Listing(self.list_page_async(cursor.as_deref()).await)
            }
            StorageStep::Size(name) => StorageReply::Size(self.size_async(&name).await),
            StorageStep::Open { name, range, mode } => {
                let opened = match mode {
                    SliceMode::Raw => self.open_by_hand_async(&name, range, true).await,
                    SliceMode::Base64 => self.open_by_hand_async(&name, range, false).await,
                };
                match opened {
                    Ok(reader) => self.first_block(reader, range, mode).await,
                    Err(e) => StorageReply::Opened(Err(e)),
                }
            }
            StorageStep::Read {
                mut reader,
                mut buf,
                want,
            } => match reader
                .as_any_mut()
                .and_then(|r| r.downcast_mut::<ObjectRange>())
            {
                Some(streamed) => {
                    let result = streamed
                        .read_block_async(&mut buf, want)
                        .await
                        .map(|()| buf);
                    StorageReply::Read {
                        reader,
                        buf: result,
                    }
                }
                None => self.blocking(StorageStep::Read { reader, buf, want }).await,
            },
            step @ StorageStep::FillPipe { .. } => self.blocking(step).await,
        }
    }

    /// The reply to an open: the reader and the range's first block.
    async fn first_block(
        &self,
        mut reader: Box<dyn RangeReader>,
        range: Range,
        mode: SliceMode,
    ) -> StorageReply {
        let want = next_block(
            &*reader,
            range.size,
            mode,
            hftp_proto::response::BASE64_CHUNK,
        );
        let mut buf = Vec::new();
        let read = match reader
            .as_any_mut()
            .and_then(|r| r.downcast_mut::<ObjectRange>())
        {
            Some(streamed) => streamed.read_block_async(&mut buf, want).await,
            None => {
                let (reader, buf) =
                    match self.blocking(StorageStep::Read { reader, buf, want }).await {
                        StorageReply::Read { reader, buf } => (reader, buf),
                        other => return other,
                    };
                return StorageReply::Opened(
                    buf.map(|buf| (reader, buf))
                        .map_err(StorageError::Unavailable),
                );
            }
        };
        StorageReply::Opened(
            read.map(|()| (reader, buf))
                .map_err(StorageError::Unavailable),
        )
    }

    /// Runs a step of the spliced path on one of the runtime's blocking
    /// threads.
    async fn blocking(&self, step: StorageStep) -> StorageReply {
        let this = self.clone();
        let fill = matches!(step, StorageStep::FillPipe { .. });
        match tokio::task::spawn_blocking(move || step.execute(&this)).await {
            Ok(reply) => reply,
            // The step panicked (a bug) or the runtime is shutting down:
            // its reader is gone, the connection ends.
            Err(e) => {
                let e = io::Error::other(format!("storage task ended: {e}"));
                let reader = Box::new(Gone);
                if fill {
                    StorageReply::PipeFilled {
                        reader,
                        filled: Err(e),
                    }
                } else {
                    StorageReply::Read {
                        reader,
                        buf: Err(e),
                    }
                }
            }
        }
    }
}

/// Stands in for a reader lost with its task.
struct Gone;

impl RangeReader for Gone {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("the storage task ended"))
    }

    fn block_size(&self) -> usize {
        super::BLOCK
    }
}
