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

/// Unmaps the whole pages of `addr .. addr + len` (`MADV_DONTNEED`), part of a shared file
/// mapping whose bytes there are final, before their writeback is started: writeback
/// write-protects every mapped page it takes, one TLB flush each, which interrupts the threads
/// still writing elsewhere in the mapping (measured: ~6% of a decompress's CPU in those flushes);
/// unmapping first flushes once per call. The pages stay in the page cache, dirty; a later
/// access maps them again. Only a hint.
///
/// # Safety
/// The range must lie inside a live shared mapping of a file (never private or anonymous
/// memory, whose contents `MADV_DONTNEED` discards).
pub unsafe fn unmap_final(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = addr.next_multiple_of(PAGE);
        let end = addr.saturating_add(len) / PAGE * PAGE;
        if end > start {
            // SAFETY: whole pages inside the caller's range, a shared file mapping (the
            // caller's contract): dropping their page-table entries keeps their contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

#[cfg(test)]
mod tests {
    #[test]
    fn unmapped_final_pages_keep_their_bytes() {
        let f = tempfile::tempfile().unwrap();
        let len = 64 * 4096 + 100;
        f.set_len(len as u64).unwrap();
        // SAFETY: a private temporary file of the test, not resized while mapped.
        let mut m = unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap();
        for (i, b) in m.iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8;
        }
        // SAFETY: inside the live shared file mapping `m`; nothing writes there afterwards.
        unsafe { super::unmap_final(m.as_ptr() as usize + 1000, len - 3000) };
        super::start(&f, 0, len as u64);
        assert!(m
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i * 31 % 251) as u8));
        drop(m);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut &f, &mut back).unwrap();
        assert_eq!(back.len(), len);
        assert!(back
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i * 31 % 251) as u8));
    }
}
