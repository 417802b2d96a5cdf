//! Driving a [`Connection`] over a non-blocking socket: what the `poll`
//! and `pool` drivers share.
//!
//! [`Conn::advance`] does everything the socket allows without waiting and
//! says what to wait for next: readiness, another turn, or a storage step
//! to be run off the loop (when the backend's calls may block). The
//! connection's progress lives in the record, not on a stack, so any
//! thread may advance it.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

use crate::admission::Ticket;
use crate::config::Config;
use crate::connection::{Action, Connection, End};
use crate::storage::{Storage, StorageReply, StorageStep};

/// One connection between readiness events.
pub struct Conn {
    stream: TcpStream,
    conn: Connection,
    /// [`Connection::stop`] was called.
    stop_told: bool,
    _ticket: Ticket,
}

pub enum Step {
    /// Wait for the socket to become readable (and writable if asked).
    Wait {
        writable: bool,
    },
    /// More can be done at once, but this turn's budget is spent: advance
    /// the connection again after the others had their turn (the loop is
    /// edge-triggered: no event would come for work left undone).
    Again,
    /// Run this step off the loop, then [`Conn::storage_done`].
    Storage(StorageStep),
    /// Nothing to do before this time (`--limit-rate`): then tell the
    /// connection (`handle_timeout`) and advance it again.
    Sleep(Instant),
    Done(End),
}

/// How storage steps are run: on the advancing thread, or handed back.
#[derive(Clone)]
pub struct StorageMode {
    pub storage: std::sync::Arc<dyn Storage>,
    /// Hand steps back to the loop for the offload pool.
    pub offload: bool,
}

impl StorageMode {
    pub fn new(config: &Config) -> StorageMode {
        let storage = std::sync::Arc::clone(&config.session.storage);
        StorageMode {
            offload: storage.may_block(),
            storage,
        }
    }
}

impl Conn {
    /// The endpoint's connection over `stream`; `ticket` holds its place.
    pub fn new(stream: TcpStream, conn: Connection, ticket: Ticket) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            conn,
            stop_told: false,
            _ticket: ticket,
        }
    }

    /// Tells the connection the server is stopping; true the first time
    /// (the caller then advances it, and the connection decides).
    pub fn tell_stop(&mut self) -> bool {
        if self.stop_told {
            return false;
        }
        self.stop_told = true;
        self.conn.stop();
        true
    }

    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn describe(&self) -> String {
        self.conn.describe()
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Logs the connection's summary line.
    pub fn finish(self, end: &End, now: Instant) {
        self.conn.finish(end, now);
    }

    pub fn storage_done(&mut self, reply: StorageReply, now: Instant) {
        self.conn.storage_done(reply, now);
    }

    /// Does what the socket allows at `now` without waiting.
    pub fn advance(&mut self, buf: &mut [u8], mode: &StorageMode, now: Instant) -> Step {
        // Each call is a turn: the last one ended waiting (or yielding).
        self.conn.new_turn();
        loop {
            match self.conn.poll() {
                Action::Send(bytes) => match self.stream.write(bytes) {
                    Ok(n) => self.conn.sent(n, now),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Step::Wait { writable: true }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => self.conn.io_failed(e),
                },
                Action::SendFile { fd, offset, len } => {
                    let mut offset = offset;
                    match rustix::fs::sendfile(&self.stream, fd, Some(&mut offset), len) {
                        Ok(n) => self.conn.sent(n, now),
                        Err(rustix::io::Errno::AGAIN) => return Step::Wait { writable: true },
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => self.conn.io_failed(e.into()),
                    }
                }
                Action::SplicePipe { pipe, len } => {
                    match rustix::pipe::splice(
                        pipe,
                        None,
                        &self.stream,
                        None,
                        len,
                        rustix::pipe::SpliceFlags::MOVE | rustix::pipe::SpliceFlags::NONBLOCK,
                    ) {
                        Ok(n) => self.conn.sent(n, now),
                        Err(rustix::io::Errno::AGAIN) => return Step::Wait { writable: true },
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => self.conn.io_failed(e.into()),
                    }
                }
                Action::Storage(step) if mode.offload => return Step::Storage(step),
                Action::Storage(step) => {
                    let reply = step.run(&*mode.storage);
                    self.conn.storage_done(reply, now);
                }
                Action::ShutdownWrite => {
                    let ok = self.stream.shutdown(Shutdown::Write).is_ok();
                    self.conn.write_shut(ok, now);
                }
                Action::Receive => match self.stream.read(buf) {
                    Ok(0) => self.conn.handle_eof(now),
                    Ok(n) => self.conn.handle_input(&buf[..n], now),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Step::Wait { writable: false }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => self.conn.io_failed(e),
                },
                Action::Yield => return Step::Again,
                Action::Sleep => return Step::Sleep(self.conn.poll_timeout().unwrap_or(now)),
                Action::Park => {
                    return Step::Done(End::Error("waiting for a storage step never run".into()))
                }
                Action::Close(end) => return Step::Done(end),
            }
        }
    }
}
