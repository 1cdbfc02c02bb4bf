//! Memory accounting for the harness: a global allocator over the system's that counts live
//! bytes and their peak (what the runner checks each input against), and a hard limit
//! past which it saves the input being run and aborts: an input that asks for all memory is
//! kept, not lost with the process. The harness's binary installs it; elsewhere (unit tests)
//! the counts stay zero and the checks are off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The allocator: `#[global_allocator] static A: lct_fuzz::memory::Counting = Counting;`
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static HARD_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The input being run, and where to save it if the process must die (set by [`arm`]).
static INPUT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static SAVE_TO: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

// SAFETY: every call is passed on to the system allocator unchanged; the counts are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: a block this allocator handed out, with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grow(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: a block this allocator handed out, with its layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn grow(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
    if live > HARD_LIMIT.load(Ordering::Relaxed) {
        die(b"lct-fuzz: an input asked for more memory than the hard limit\n");
    }
}

/// Saves the input being run (if armed) and aborts; allocates nothing (it may run inside
/// the allocator).
pub fn die(why: &[u8]) -> ! {
    // SAFETY: plain system calls on buffers that live for the process (the input is only
    // replaced between runs, on the thread that is stuck in this one).
    unsafe {
        libc::write(2, why.as_ptr().cast(), why.len());
        let path = SAVE_TO.load(Ordering::SeqCst);
        let input = INPUT.load(Ordering::SeqCst);
        if !path.is_null() && !input.is_null() {
            let fd = libc::open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644);
            if fd >= 0 {
                libc::write(fd, input.cast(), INPUT_LEN.load(Ordering::SeqCst));
                libc::close(fd);
                let said = b"lct-fuzz: the input was saved to ";
                libc::write(2, said.as_ptr().cast(), said.len());
                libc::write(2, path.cast(), libc::strlen(path));
                libc::write(2, b"\n".as_ptr().cast(), 1);
            }
        }
        libc::abort()
    }
}

/// Whether the counting allocator is the process's (it has counted something).
pub fn installed() -> bool {
    PEAK.load(Ordering::Relaxed) > 0
}

/// Bytes live now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak from what is live now; returns that.
pub fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Live bytes past which the process saves its input and aborts.
pub fn set_hard_limit(bytes: usize) {
    HARD_LIMIT.store(bytes, Ordering::Relaxed);
}

/// The input about to run and where it goes if the process must die on it. Both must stay
/// alive until the next call (the runner keeps them).
pub fn arm(input: &[u8], save_to: &CStr) {
    INPUT_LEN.store(input.len(), Ordering::SeqCst);
    INPUT.store(input.as_ptr().cast_mut(), Ordering::SeqCst);
    SAVE_TO.store(save_to.as_ptr().cast_mut(), Ordering::SeqCst);
}

/// No input is running.
pub fn disarm() {
    INPUT.store(std::ptr::null_mut(), Ordering::SeqCst);
}
