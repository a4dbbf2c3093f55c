//! The broker's global allocator: mimalloc, tuned to return memory it no longer uses.
//!
//! glibc's malloc kept about a gigabyte of freed buffers (sealing, large fetches) resident
//! under load; mimalloc returns them. It is built without transparent huge pages
//! ("no_thp"): with them the kernel zeroed a whole 2 MiB page for each one mimalloc touched
//! after returning part of it, a third of the broker's CPU at full produce load.
//!
//! mimalloc 3 keeps freed memory for a second before returning it (its `purge_delay`
//! option): under load the broker frees megabytes every millisecond (produce requests, WAL
//! objects, seal parts, fetched blocks), so a second of them stayed resident. [`tune`] sets
//! the delay to [`PURGE_DELAY_MS`]: the broker's peak RSS in an 8- then 100-partition
//! produce and a consume fell from 558 to 368 MiB, with no measurable CPU cost (see
//! `docs/design.md`, "Memory"). `MIMALLOC_PURGE_DELAY` in the environment still wins.

/// The allocator every binary of the broker installs.
pub use mimalloc::MiMalloc as Allocator;

/// How long mimalloc keeps memory freed before returning it to the kernel.
pub const PURGE_DELAY_MS: i64 = 10;

/// mimalloc's option number for `purge_delay` (`mi_option_purge_delay` in `mimalloc.h`;
/// the crate exposes no constants). [`tests`] checks it names the option with mimalloc 3's
/// default of 1000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the allocator's options, unless the environment gives them. Call it first thing in
/// `main`, before any other thread starts (mimalloc's option setter is not thread safe).
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

// The need for unsafe: mimalloc's options can be given only through the environment
// (read when the process loads, before `main`) or through its C API, which the Rust
// binding exposes as raw `extern "C"` functions. The calls take a plain integer option
// number within mimalloc's option table (checked by the tests) and touch nothing else.
#[allow(unsafe_code)]
fn set(option: libmimalloc_sys::mi_option_t, value: i64) {
    // SAFETY: `option` is a valid option number (mimalloc also ignores one out of range);
    // called before other threads exist, as mimalloc requires of option setters.
    unsafe { libmimalloc_sys::mi_option_set(option, value as _) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The allocator's purge delay now.
    #[allow(unsafe_code)]
    fn purge_delay_ms() -> i64 {
        // SAFETY: reading an option is thread safe for any option number.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
    }

    /// Option 15 is `purge_delay`: mimalloc 3's default is 1000 ms, and after `tune` it is
    /// ours. (Run without `MIMALLOC_PURGE_DELAY` in the environment.)
    #[test]
    fn tune_sets_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(
            purge_delay_ms(),
            1000,
            "option 15 is not mimalloc 3's purge_delay"
        );
        tune();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
