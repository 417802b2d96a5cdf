//! Ctrl-C stops the transfer under way instead of killing the process,
//! so that the client can say what it kept (and the shell can go on).

use std::sync::atomic::{AtomicBool, Ordering};

use hftp_client::Interrupt;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static PRESSED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: nix::libc::c_int) {
    // A second Ctrl-C while the first is being handled: leave now.
    if PRESSED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { nix::libc::_exit(130) };
    }
}

/// Installs the handler, without SA_RESTART: a blocked read returns
/// EINTR, so that even a stalled transfer stops at once.
pub fn install() -> Option<Interrupt> {
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only touches an atomic and calls _exit.
    unsafe { sigaction(Signal::SIGINT, &action) }.ok()?;
    Some(Interrupt(&PRESSED))
}

/// Forgets an earlier Ctrl-C (the shell, before each command).
pub fn reset() {
    PRESSED.store(false, Ordering::SeqCst);
}
