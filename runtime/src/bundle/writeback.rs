//! Writing finished parts of an output file back to disk on a thread of their own while the
//! next parts are computed, so that the sync before the rename has little left to wait for.
//!
//! Starting writeback (`sync_file_range`) is not free: the calling thread maps and submits
//! every page (about 40 ms per 100 MB on the development VM), so it must not stall the thread
//! that feeds the decoder or the encoder.

use std::fs::File;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

/// A thread that starts writeback of the byte ranges it is sent.
pub struct Writeback {
    tx: Option<Sender<(u64, u64)>>,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    /// Starts the thread for `file` (its own handle: the caller may keep writing through its).
    pub fn new(file: &File) -> Self {
        let (tx, rx) = channel::<(u64, u64)>();
        let thread = file.try_clone().ok().and_then(|f| {
            std::thread::Builder::new()
                .name("unweight-writeback".into())
                .spawn(move || {
                    for (offset, len) in rx {
                        start(&f, offset, len);
                    }
                })
                .ok()
        });
        Self {
            tx: thread.is_some().then_some(tx),
            thread,
        }
    }

    /// Asks for bytes `offset .. offset + len` of the file to be written back (a hint: if the
    /// thread could not be started, the final sync writes them).
    pub fn start(&self, offset: u64, len: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((offset, len));
        }
    }

    /// Waits until every range sent so far has been handed to the disk.
    pub fn finish(mut self) {
        self.join();
    }

    fn join(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.join();
    }
}

/// Starts writing `len` bytes of `file` from `offset` back to disk (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`: the pages are submitted, not waited for). Only a hint: where the OS
/// has no such call, or it fails, the final sync does all the writing.
pub fn start(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open (borrowed File); the call reads no memory of ours.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}
