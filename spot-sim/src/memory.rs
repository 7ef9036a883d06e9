//! Giving freed memory back to the system.

/// Returns the allocator's free memory to the system. glibc keeps freed memory in its arenas,
/// and a large block freed once (a copy of the kernel's BTF, a big report) also raises its
/// mmap threshold, so the next large blocks come from the heap and stay there. (musl returns
/// large blocks by itself.)
pub fn release() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
