//! What this process holds, read from `/proc` and the allocator: the measuring helpers of the
//! memory and descriptor tests (chaos, soak, scale, block streaming) and of the benchmarks
//! (`bsv/benches/support`), which include this file by path. Linux only, as those measurements
//! are; each reads 0 where the information is missing.
#![allow(dead_code)]

/// A `kB` field of `/proc/self/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident set size, in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// Resident set size, in bytes.
pub fn rss() -> u64 {
    rss_kib() * 1024
}

/// Resets the peak resident set (`VmHWM`) to the current one (Linux `clear_refs` value 5).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Open file descriptors.
pub fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Glibc keeps freed memory in its arenas; trimming returns it to the system, so the resident
/// set shows what is really held rather than what the allocator kept (docs/SECURITY.md).
pub fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free memory of the allocator's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: `uordblks` in the
/// arenas plus `hblkhd` in separate mappings): what the process really holds on the heap, as
/// against the resident set, which also counts freed memory the allocator keeps.
pub fn heap_in_use() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` only reads the allocator's counters.
        let m = unsafe { libc::mallinfo2() };
        (m.uordblks + m.hblkhd) as u64
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

/// Raises the soft open-file limit to the hard one (many connections need a descriptor per
/// socket on both sides); returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit` for the duration of both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}
