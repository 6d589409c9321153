//! The global allocator: the system's, asking Linux for transparent huge
//! pages on large allocations. State backends keep state in hash tables
//! of gigabytes that fill in random order; with 4 KiB pages, restoring a
//! 1.1 GB checkpoint spent 39 % of its time in first-touch page faults
//! (docs/benchmarks.md). Where transparent huge pages are `madvise` only
//! (Debian's default), memory gets them only when advised so; where they
//! are `always` or `never`, the advice changes nothing. No crate does just
//! this (mimalloc's large-page option needs reserved huge pages).

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, advising huge pages for allocations of 8 MiB or
/// more (smaller ones would round up too much memory).
pub struct HugePages;

#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;
#[cfg(target_os = "linux")]
const LEAST: usize = 4 * HUGE_PAGE;

// SAFETY: every call is the system allocator's own; `advise` only gives
// the kernel advice about whole pages inside the block just allocated.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let q = unsafe { System.realloc(p, layout, new_size) };
        advise(q, new_size);
        q
    }
}

/// Advises huge pages for the whole 2 MiB pages of `size` bytes at `p`.
fn advise(p: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() && size >= LEAST {
        let start = (p as usize).next_multiple_of(HUGE_PAGE);
        let end = (p as usize + size) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: [start, end) lies inside the block just allocated;
            // MADV_HUGEPAGE changes no content. A failure (a kernel
            // without huge pages) leaves small pages, and the allocation
            // that succeeded must not leave its `errno` behind.
            unsafe {
                let errno = libc::__errno_location();
                let saved = *errno;
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
                *errno = saved;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, size);
}
