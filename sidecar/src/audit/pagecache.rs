//! Page-cache hints for the audit trail's files: start a range's write-back, drop a range's
//! cached pages. Both spread kernel work the audit trail causes anyway over small system calls,
//! instead of one long one on the CPU that serves calls:
//!
//! ```text
//! janitor: closed segment ── write_back × 32 ──► fdatasync (only waits)
//!          shipped segment ── drop_cached × 32 ──► unlink (nothing cached left to free)
//! file sink: write(batch) ──► fdatasync ──► drop_cached(batch) (write-once; never kept cached)
//! ```
//!
//! Linux only; elsewhere both do nothing. The module's `unsafe` is the two FFI calls, which take
//! a borrowed descriptor and integers.
#![allow(unsafe_code)]

use std::{fs::File, io};

/// Starts writing back the dirty pages of `len` bytes from `off` (`sync_file_range`
/// `SYNC_FILE_RANGE_WRITE`: does not wait for the disk).
pub(super) fn write_back(f: &File, off: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call (borrowed from `f`); the
        // other arguments are integers.
        let r = unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                off as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let _ = (f, off, len);
    Ok(())
}

/// Drops the cached clean pages of `len` bytes from `off`, rounded out to whole pages
/// (`posix_fadvise` `POSIX_FADV_DONTNEED`; dirty pages stay).
pub(super) fn drop_cached(f: &File, off: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        const PAGE: u64 = 4096;
        let start = off & !(PAGE - 1);
        // SAFETY: as in `write_back`.
        let r = unsafe {
            libc::posix_fadvise(
                f.as_raw_fd(),
                start as libc::off_t,
                (off + len - start) as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
    }
    let _ = (f, off, len);
    Ok(())
}
