//! Giving a new output file its space before it is filled through a memory map.
//!
//! A write through a mapping to a page the file system cannot back (a full disk or tmpfs)
//! raises SIGBUS instead of returning an error, so every page is reserved before the decoder
//! writes, and the file system decides what that costs:
//! - where `fallocate` only records extents (ext4, XFS, ...) it is nearly free; the pages are
//!   faulted in later, window by window and on every core ([`prefault`]);
//! - on tmpfs it allocates every page, on one thread under the inode's lock (0.13 s of a
//!   ~0.5 s `decompress` of 352 MB on the development VM, the other core idle). There one
//!   thread allocates the back half that way while the others populate the front half's
//!   mapped pages for writing (`MADV_POPULATE_WRITE`, which allocates them as faults do and
//!   reports a full file system as an error, `EFAULT`, not a signal). Populating alone would
//!   spread all of it over the cores but costs ~25% more CPU per page than `fallocate` and
//!   the later mapping together (measured: 0.24 s against 0.19 s for 352 MB); the split keeps
//!   most of both gains.

use std::fs::File;
use std::io;

/// Pages populated per call, one call per task: large enough that the call's overhead is
/// negligible, small enough to spread over the cores.
const CHUNK: usize = 4 << 20;

const PAGE: usize = 4096;

/// Gives `file` (empty, just created) `len` bytes and returns its mapping, every byte of which
/// can then be written without a fault the file system could refuse.
pub fn reserve(file: &File, len: u64) -> io::Result<memmap2::MmapMut> {
    if is_tmpfs(file) {
        file.set_len(len)?;
        // SAFETY: the caller's fresh file, not shared with anything that could truncate it
        // while it is mapped.
        let mut map = unsafe { memmap2::MmapMut::map_mut(file) }?;
        // The front populated on every core while one of them allocates the back (`fallocate`
        // costs less per page than a fault, but runs on one thread only).
        let mid = (map.len() / 2 / PAGE * PAGE).min(map.len());
        let (front, _) = map.split_at_mut(mid);
        let (populated, back) = rayon::join(
            || populate(front),
            || allocate_range(file, mid as u64, len - mid as u64),
        );
        back?;
        return match populated {
            Ok(true) => Ok(map),
            // No MADV_POPULATE_WRITE (Linux < 5.14): allocate the front the slow way too.
            Ok(false) => allocate(file, len).map(|()| map),
            Err(e) => Err(no_room(e, len)),
        };
    }
    allocate(file, len)?;
    // SAFETY: as above.
    unsafe { memmap2::MmapMut::map_mut(file) }
}

/// `EFAULT` from populating means the fault would have raised SIGBUS: no room.
fn no_room(e: io::Error, len: u64) -> io::Error {
    if e.raw_os_error() == Some(libc_efault()) {
        io::Error::new(
            io::ErrorKind::StorageFull,
            format!("the file system has no room for its {len} bytes"),
        )
    } else {
        e
    }
}

fn libc_efault() -> i32 {
    #[cfg(target_os = "linux")]
    return libc::EFAULT;
    #[cfg(not(target_os = "linux"))]
    return 14;
}

/// Allocates every page of `map` (a shared, writable file mapping) for writing, on every core.
/// `Ok(false)`: the OS cannot populate (nothing was checked); `Err`: some page cannot be
/// backed (`EFAULT`: a write there would raise SIGBUS).
pub fn populate(map: &mut [u8]) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use rayon::prelude::*;
        let (addr, len) = (map.as_mut_ptr() as usize, map.len());
        if len == 0 {
            return Ok(true);
        }
        // A mapping starts on a page; its last page may be partial (madvise rounds it up).
        debug_assert_eq!(addr % PAGE, 0);
        let results: Vec<io::Result<()>> = (0..len)
            .into_par_iter()
            .step_by(CHUNK)
            .map(|off| {
                let n = CHUNK.min(len - off);
                // SAFETY: [addr + off, addr + off + n) lies inside `map`, a live mapping the
                // caller borrows exclusively; populating only maps pages (zeroed, or the
                // file's contents) and changes no byte of them.
                let r = unsafe {
                    libc::madvise(
                        (addr + off) as *mut libc::c_void,
                        n,
                        libc::MADV_POPULATE_WRITE,
                    )
                };
                if r == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            })
            .collect();
        for r in results {
            match r {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = map;
        Ok(false)
    }
}

/// Faults in the pages of `dst` (part of a shared file mapping whose blocks are reserved) for
/// writing, in parallel, in chunks of a few MB: the kernel then zeroes and maps them in bulk
/// instead of taking one page fault per page while the decoder writes. Only a hint: without
/// `MADV_POPULATE_WRITE` (Linux 5.14+) the decoder's writes fault the pages in as usual.
pub fn prefault(dst: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        use rayon::prelude::*;
        let (addr, len) = (dst.as_mut_ptr() as usize, dst.len());
        let start = addr.next_multiple_of(PAGE);
        let end = (addr + len) / PAGE * PAGE;
        if end <= start {
            return;
        }
        (start..end).into_par_iter().step_by(CHUNK).for_each(|a| {
            let n = CHUNK.min(end - a);
            // SAFETY: [a, a + n) lies inside `dst`, memory of a live mapping that the caller
            // borrows exclusively; populating only maps pages (zeroed, or the file's contents)
            // and changes no byte of them.
            unsafe { libc::madvise(a as *mut libc::c_void, n, libc::MADV_POPULATE_WRITE) };
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dst;
}

/// Gives `file` `len` bytes, allocated on disk where the file system can (`fallocate`): pages
/// then fault in without the file system reserving blocks for each one.
fn allocate(file: &File, len: u64) -> io::Result<()> {
    allocate_range(file, 0, len)
}

/// [`allocate`] of bytes `offset .. offset + len` (the file is at least that long already
/// where the OS has no `fallocate`).
fn allocate_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open (borrowed File); the call reads no memory of ours.
        let r = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                0,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
    }
    if file.metadata()?.len() < offset + len {
        file.set_len(offset + len)?;
    }
    Ok(())
}

/// Whether `file` lives on tmpfs (or ramfs), where `fallocate` zeroes pages instead of
/// recording extents.
pub fn is_tmpfs(file: &File) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fstatfs writes only into the zeroed struct it is given; the descriptor is open.
        let (r, st) = unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            let r = libc::fstatfs(file.as_raw_fd(), &mut st);
            (r, st)
        };
        // f_type's integer type differs between targets; the magic numbers fit in 32 bits.
        const TMPFS_MAGIC: u32 = 0x0102_1994;
        const RAMFS_MAGIC: u32 = 0x8584_58f6;
        let magic = st.f_type as u32;
        r == 0 && (magic == TMPFS_MAGIC || magic == RAMFS_MAGIC)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        false
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Directories to try: tmpfs (where the pages are populated) and the disk under the
    /// build directory (where blocks are allocated).
    fn dirs() -> Vec<std::path::PathBuf> {
        let mut d = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
        if std::path::Path::new("/dev/shm").is_dir() {
            d.push("/dev/shm".into());
        }
        d
    }

    #[test]
    fn reserves_every_byte_up_front() {
        let len = 3 * CHUNK as u64 + 12_345;
        for dir in dirs() {
            let f = tempfile::tempfile_in(&dir).unwrap();
            let mut map = reserve(&f, len).unwrap();
            let m = f.metadata().unwrap();
            assert_eq!(m.len(), len, "{}", dir.display());
            // Space is taken before a byte is written: blocks (fallocate) or pages.
            assert!(
                m.blocks() * 512 >= len / PAGE as u64 * PAGE as u64,
                "{}: {} blocks of 512 for {len} bytes",
                dir.display(),
                m.blocks()
            );
            assert_eq!(map.len() as u64, len);
            assert!(map.iter().all(|&b| b == 0));
            map[len as usize - 1] = 7;
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn populating_pages_the_file_cannot_back_is_an_error_not_a_signal() {
        for dir in dirs() {
            let f = tempfile::tempfile_in(&dir).unwrap();
            f.set_len(8 * PAGE as u64).unwrap();
            // SAFETY: a private temporary file; it is shrunk below while mapped on purpose,
            // and no byte past its new end is touched.
            let mut map = unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap();
            f.set_len(2 * PAGE as u64).unwrap();
            // Touching pages 2..8 now would raise SIGBUS; populating reports it instead.
            let err = populate(&mut map).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EFAULT), "{}", dir.display());
            let e = no_room(err, 8 * PAGE as u64);
            assert_eq!(e.kind(), io::ErrorKind::StorageFull);
            assert!(e.to_string().contains("no room for its 32768 bytes"), "{e}");
        }
    }

    #[test]
    fn tells_tmpfs_from_disk() {
        let disk = tempfile::tempfile_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        // The build directory is on a disk on every machine this project builds on.
        assert!(!is_tmpfs(&disk));
        if cfg!(target_os = "linux") && std::path::Path::new("/dev/shm").is_dir() {
            assert!(is_tmpfs(&tempfile::tempfile_in("/dev/shm").unwrap()));
        }
    }
}
