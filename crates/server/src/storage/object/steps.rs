//! Storage steps as tasks of the backend's runtime ([`Storage::spawn_step`]):
//! what lets a loop driver or the `async` model ask the store without
//! parking a thread per call.
//!
//! Listings, sizes, opens and reads of a streamed body are async all the
//! way down: a step waiting for the store is a task holding a socket and a
//! timer. The by-hand path ([`super::by_hand`]) reads its socket and fills
//! its pipe with blocking calls, so its steps run on the runtime's bounded
//! blocking threads ([`super::BLOCKING_THREADS`]), started there directly
//! ([`blocks`]): a spliced slice takes a step per pipe's worth, and a task
//! in between would add two thread hand-offs to each.

use std::io;

use hftp_proto::{Range, SliceMode};

use super::{ObjectRange, ObjectStorage};
use crate::storage::{next_block, RangeReader, StepDone, StorageError, StorageReply, StorageStep};

/// Whether `step` blocks on a socket (a by-hand read or fill): it then runs
/// on a blocking thread of its own, not as a task.
pub(super) fn blocks(step: &mut StorageStep) -> bool {
    match step {
        StorageStep::FillPipe { .. } => true,
        StorageStep::Read { reader, .. } => {
            !reader.as_any_mut().is_some_and(|r| r.is::<ObjectRange>())
        }
        _ => false,
    }
}

/// A step's `done`, called exactly once: with the reply, or, if the step
/// never replies (it panicked, or the runtime shut down before it ran),
/// with a failure, so that its connection ends instead of waiting forever.
pub(super) struct ReplyOnce {
    done: Option<StepDone>,
    fill: bool,
}

impl ReplyOnce {
    pub(super) fn new(done: StepDone, step: &StorageStep) -> ReplyOnce {
        ReplyOnce {
            done: Some(done),
            fill: matches!(step, StorageStep::FillPipe { .. }),
        }
    }

    pub(super) fn send(mut self, reply: StorageReply) {
        if let Some(done) = self.done.take() {
            done(reply);
        }
    }
}

impl Drop for ReplyOnce {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(ended(
                self.fill,
                "the storage task ended before it replied".into(),
            ));
        }
    }
}

/// The reply of a step whose reader was lost with its task.
fn ended(fill: bool, why: String) -> StorageReply {
    let e = io::Error::other(why);
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
            Err(e) => ended(fill, format!("storage task ended: {e}")),
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn fill_step() -> StorageStep {
        StorageStep::FillPipe {
            reader: Box::new(Gone),
            want: 1,
        }
    }

    #[test]
    fn a_step_that_never_replies_still_answers_its_connection() {
        let (tx, rx) = mpsc::channel();
        let step = fill_step();
        let reply = ReplyOnce::new(Box::new(move |r| tx.send(r).unwrap()), &step);
        // As when the step panics or the runtime drops it unrun.
        drop(reply);
        match rx.try_recv() {
            Ok(StorageReply::PipeFilled { filled: Err(e), .. }) => {
                assert!(e.to_string().contains("ended"), "{e}")
            }
            _ => panic!("no failure reply"),
        }
        assert!(rx.try_recv().is_err(), "replied twice");
    }

    #[test]
    fn a_reply_is_sent_once() {
        let (tx, rx) = mpsc::channel();
        let step = fill_step();
        let reply = ReplyOnce::new(Box::new(move |r| tx.send(r).unwrap()), &step);
        reply.send(StorageReply::PipeFilled {
            reader: Box::new(Gone),
            filled: Ok(7),
        });
        assert!(matches!(
            rx.try_recv(),
            Ok(StorageReply::PipeFilled { filled: Ok(7), .. })
        ));
        assert!(rx.try_recv().is_err(), "replied twice");
    }

    #[test]
    fn by_hand_steps_block_and_streamed_reads_do_not() {
        assert!(blocks(&mut fill_step()));
        let mut read = StorageStep::Read {
            reader: Box::new(Gone),
            buf: Vec::new(),
            want: 1,
        };
        assert!(blocks(&mut read));
        assert!(!blocks(&mut StorageStep::ListPage { cursor: None }));
    }
}
