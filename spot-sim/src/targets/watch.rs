//! Change notifications for target cgroups (inotify), so an idle spot-sim learns that a
//! cgroup emptied or was removed without looking at every target on a timer.
//!
//! Two facts of cgroup v2 shape this (both checked on this project's kernels):
//! - `cgroup.events` raises a modify event when its `populated` value changes
//!   (Documentation/admin-guide/cgroup-v2.rst, "cgroup.events": "A value change in this file
//!   generates a file modified event").
//! - Removing a cgroup raises nothing on the removed directory itself (kernfs sends no
//!   delete-self), but its parent directory sees `IN_DELETE` with the child's name. So each
//!   target's parent is watched too, and a deletion there is matched by name.

use std::{
    collections::HashMap,
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
};

use super::CgroupDir;

/// What happened to a watched cgroup, by the key it was added with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupChange {
    /// `cgroup.events` changed: the cgroup filled or emptied.
    Events(u32),
    /// A directory with the cgroup's name was removed from its parent: look whether it is
    /// gone (it may also be a namesake after a rename).
    MaybeRemoved(u32),
    /// Events were lost (the queue overflowed): look at every target.
    Overflow,
}

/// One inotify instance watching every target's `cgroup.events` and parent directory.
#[derive(Debug)]
pub struct CgroupWatch {
    fd: OwnedFd,
    /// Watch descriptor of a `cgroup.events` → the target's key.
    events: HashMap<i32, u32>,
    /// Watch descriptor of a parent directory → (child name, key) of the targets below it.
    parents: HashMap<i32, Vec<(Vec<u8>, u32)>>,
    /// The key's two watch descriptors, to undo them.
    keys: HashMap<u32, (i32, i32)>,
}

impl CgroupWatch {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: HashMap::new(),
            parents: HashMap::new(),
            keys: HashMap::new(),
        })
    }

    /// Starts watching `cgroup` under `key`.
    pub fn add(&mut self, key: u32, cgroup: &CgroupDir) -> io::Result<()> {
        // Through the directory we hold open: the path may have been reused since.
        let dir = format!("/proc/self/fd/{}", cgroup.as_fd().as_raw_fd());
        let events = self.add_watch(&format!("{dir}/cgroup.events"), libc::IN_MODIFY)?;
        let parent = match self.add_watch(&format!("{dir}/.."), libc::IN_DELETE | libc::IN_ONLYDIR)
        {
            Ok(p) => p,
            Err(e) => {
                self.rm_watch_if_unused(events);
                return Err(e);
            }
        };
        let name = cgroup
            .path()
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        self.events.insert(events, key);
        self.parents.entry(parent).or_default().push((name, key));
        self.keys.insert(key, (events, parent));
        Ok(())
    }

    /// Stops watching `key` (a removed target).
    pub fn remove(&mut self, key: u32) {
        let Some((events, parent)) = self.keys.remove(&key) else {
            return;
        };
        self.events.remove(&events);
        self.rm_watch_if_unused(events);
        if let Some(children) = self.parents.get_mut(&parent) {
            children.retain(|(_, k)| *k != key);
        }
        self.rm_watch_if_unused(parent);
    }

    /// Readable when there are changes to [`CgroupWatch::read`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Delivers every change queued so far.
    pub fn read(&mut self, mut f: impl FnMut(CgroupChange)) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads into our own buffer, at most its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return; // EAGAIN: drained.
            }
            for (wd, mask, name) in parse(&buf[..n as usize]) {
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    f(CgroupChange::Overflow);
                } else if let Some(&key) = self.events.get(&wd) {
                    f(CgroupChange::Events(key));
                } else if let Some(children) = self.parents.get(&wd) {
                    for (child, key) in children {
                        if child.as_slice() == name {
                            f(CgroupChange::MaybeRemoved(*key));
                        }
                    }
                }
            }
        }
    }

    fn add_watch(&self, path: &str, mask: u32) -> io::Result<i32> {
        let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a NUL-terminated path and our own inotify fd.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// inotify hands out one descriptor per watched inode: two targets under one parent (a
    /// slice of pods) share it, so it goes only when no target uses it any more.
    fn rm_watch_if_unused(&mut self, wd: i32) {
        if self.events.contains_key(&wd) || self.parents.get(&wd).is_some_and(|c| !c.is_empty()) {
            return;
        }
        self.parents.remove(&wd);
        // SAFETY: our own inotify fd; a stale wd only returns EINVAL.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }
}

/// Splits a buffer of `struct inotify_event` records into (wd, mask, name).
fn parse(buf: &[u8]) -> Vec<(i32, u32, &[u8])> {
    const HEAD: usize = size_of::<libc::inotify_event>();
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEAD <= buf.len() {
        // SAFETY: HEAD bytes are there; read_unaligned copes with any alignment.
        let ev: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
        let end = (at + HEAD + ev.len as usize).min(buf.len());
        let raw = &buf[at + HEAD..end];
        let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        out.push((ev.wd, ev.mask, name));
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(wd: i32, mask: u32, name: &[u8], pad: usize) -> Vec<u8> {
        let ev = libc::inotify_event {
            wd,
            mask,
            cookie: 0,
            len: (name.len() + pad) as u32,
        };
        // SAFETY: inotify_event is plain old data.
        let head: [u8; size_of::<libc::inotify_event>()] = unsafe { std::mem::transmute(ev) };
        let mut v = head.to_vec();
        v.extend_from_slice(name);
        v.extend(std::iter::repeat_n(0, pad));
        v
    }

    #[test]
    fn records_with_padded_names_split_into_events() {
        let mut buf = record(3, libc::IN_MODIFY, b"", 0);
        buf.extend(record(4, libc::IN_DELETE | libc::IN_ISDIR, b"pod-a", 11));
        buf.extend(record(-1, libc::IN_Q_OVERFLOW, b"", 0));
        let got = parse(&buf);
        assert_eq!(
            got,
            vec![
                (3, libc::IN_MODIFY, &b""[..]),
                (4, libc::IN_DELETE | libc::IN_ISDIR, &b"pod-a"[..]),
                (-1, libc::IN_Q_OVERFLOW, &b""[..]),
            ]
        );
    }

    #[test]
    fn a_cut_record_is_not_read_past_the_buffer() {
        let buf = record(4, libc::IN_DELETE, b"name", 4);
        let got = parse(&buf[..buf.len() - 3]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2, b"name");
    }
}
