//! Extracting into a directory without ever writing outside it.
//!
//! Names from an image are untrusted. Every path is resolved from a descriptor of the output
//! directory, one component at a time, with `openat(…, O_DIRECTORY | O_NOFOLLOW)`: a symbolic
//! link is never followed, whether the image made it or it was there before, so no link can
//! lead a write outside. Components are checked once more (the index already refused `..` and
//! made absolute names relative): empty, `.`, `..` and names holding `/` or NUL are refused.
//!
//! Nothing that exists is replaced without `--force`:
//! - a file is written under a temporary name in its directory, checked (its bytes hashed
//!   against the index as they stream), given its owner, mode and time, and only then
//!   linked to its real name, which fails if the name is taken (no check-then-write race);
//!   with `--force` it is renamed over what is there. A failed or interrupted file leaves
//!   nothing under its real name;
//! - an existing directory is used as it is; its mode and time change only with `--force`;
//! - a directory is never removed, not even with `--force`;
//! - with `--force`, a file or link standing where a directory must be is removed.
//!
//! Directory modes and times are applied last, deepest first, so that a read-only directory
//! can still be filled and writing into a directory does not change its time afterwards.
//! Owners are set only when running as root (as tar does).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    chownat, fchmod, fchown, futimens, linkat, mkdirat, mknodat, openat, renameat, statat,
    symlinkat, unlinkat, utimensat, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps,
};
use rustix::fs::{Gid, Uid};
use rustix::io::Errno;

use crate::escape::escape_bytes;
use crate::layer::path::split_last;

use super::tar_writer::Meta;
use super::write::Sink;
use super::UnpackError;

/// Extracts entries below one directory (see the module documentation).
pub struct DirWriter {
    root: OwnedFd,
    shown: String,
    force: bool,
    owners: bool,
    /// The directory the last entry went into, kept open for the next one.
    parent: Option<(Vec<u8>, OwnedFd)>,
    /// Directories whose mode and time are applied at the end, in creation order.
    dirs: Vec<(Vec<u8>, Meta)>,
    temp_seq: u64,
    symlinks_out: u64,
}

/// How a name that is in the way looks.
fn describe(dirfd: BorrowedFd<'_>, name: &[u8]) -> (Option<FileType>, &'static str) {
    match statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            let kind = FileType::from_raw_mode(stat.st_mode);
            let words = match kind {
                FileType::Directory => "a directory",
                FileType::Symlink => "a symbolic link",
                FileType::RegularFile => "a file",
                _ => "a special file",
            };
            (Some(kind), words)
        }
        Err(_) => (None, "something"),
    }
}

fn times(mtime: u64) -> Timestamps {
    let at = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: at,
        last_modification: at,
    }
}

fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode(bits & 0o7777)
}

/// Whether a name may be created inside the output.
fn safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// Whether a symbolic link at `path` with `target` points outside the output directory.
fn points_out(path: &[u8], target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return true;
    }
    let mut depth = path.split(|&b| b == b'/').count() as i64 - 1;
    for component in target.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

impl DirWriter {
    /// Extract into `dir`, creating it (and its parents) when missing. `dir` itself is the
    /// user's choice and may be reached through a link; nothing below it is.
    pub fn open(dir: &Path, force: bool) -> io::Result<DirWriter> {
        std::fs::create_dir_all(dir)?;
        let root = openat(
            rustix::fs::CWD,
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let shown = dir.display().to_string();
        Ok(DirWriter {
            root,
            shown: shown.trim_end_matches('/').to_string(),
            force,
            owners: rustix::process::geteuid().is_root(),
            parent: None,
            dirs: Vec::new(),
            temp_seq: 0,
            symlinks_out: 0,
        })
    }

    /// The output directory as given.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.shown)
    }

    /// Symbolic links written that point outside the output (absolute, or climbing above
    /// it with `..`): written as they are, never followed.
    pub fn symlinks_pointing_out(&self) -> u64 {
        self.symlinks_out
    }

    /// A refusal about `path` (below the output), as an error the export reports as is.
    fn refused(&self, path: &[u8], why: impl Into<String>) -> io::Error {
        io::Error::other(UnpackError::Refused {
            path: format!("{}/{}", self.shown, escape_bytes(path)),
            why: why.into(),
        })
    }

    fn exists(&self, path: &[u8]) -> io::Error {
        self.refused(
            path,
            "already exists; refusing to overwrite it (pass --force to replace it)",
        )
    }

    /// Open the directory `dir` (relative to the output), one component at a time without
    /// following links; with `create`, missing components are made.
    fn walk(&self, dir: &[u8], create: bool) -> io::Result<OwnedFd> {
        let mut fd = self.root.try_clone()?;
        if dir.is_empty() {
            return Ok(fd);
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut end = 0;
        for name in dir.split(|&b| b == b'/') {
            end += name.len();
            let so_far = &dir[..end];
            end += 1;
            if !safe_name(name) {
                return Err(self.refused(so_far, "not a name that can be created safely"));
            }
            fd = match openat(&fd, name, flags, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::NOENT) if create => {
                    match mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(&fd, name, flags, Mode::empty())?
                }
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    // Not a directory (a link, a file): never gone through.
                    let (kind, words) = describe(fd.as_fd(), name);
                    if !self.force || kind == Some(FileType::Directory) || !create {
                        return Err(self.refused(
                            so_far,
                            format!(
                                "is {words}, not a directory; refusing to write through it{}",
                                if self.force || !create {
                                    ""
                                } else {
                                    " (pass --force to replace it)"
                                }
                            ),
                        ));
                    }
                    unlinkat(&fd, name, AtFlags::empty())?;
                    mkdirat(&fd, name, Mode::from_raw_mode(0o755))?;
                    openat(&fd, name, flags, Mode::empty())?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(fd)
    }

    /// The open parent directory of `path` and its last component.
    fn parent<'p>(&mut self, path: &'p [u8]) -> io::Result<(BorrowedFd<'_>, &'p [u8])> {
        let Some((dir, name)) = split_last(path) else {
            return Err(self.refused(path, "the output directory itself cannot be replaced"));
        };
        // Only normalised relative paths: no empty, `.` or `..` component anywhere.
        if !path.split(|&b| b == b'/').all(safe_name) {
            return Err(self.refused(path, "not a name that can be created safely"));
        }
        let cached = matches!(&self.parent, Some((p, _)) if p.as_slice() == dir);
        if !cached {
            let fd = self.walk(dir, true)?;
            self.parent = Some((dir.to_vec(), fd));
        }
        match &self.parent {
            Some((_, fd)) => Ok((fd.as_fd(), name)),
            None => Err(io::Error::other("no parent directory")),
        }
    }

    /// Owner (as root), mode and time of an open file.
    fn settle(&self, fd: BorrowedFd<'_>, meta: Meta) -> io::Result<()> {
        if self.owners {
            // Before the mode: changing the owner clears setuid and setgid bits.
            fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )?;
        }
        fchmod(fd, mode(meta.mode))?;
        futimens(fd, &times(meta.mtime))?;
        Ok(())
    }

    /// Make room for a new entry at `name` in `dirfd` after `EEXIST`: with `--force` remove
    /// what is there unless it is a directory; otherwise refuse.
    fn make_room(&self, dirfd: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> io::Result<()> {
        let (kind, words) = describe(dirfd, name);
        if kind == Some(FileType::Directory) {
            return Err(self.refused(
                path,
                "is a directory in the way; it is not replaced, not even with --force",
            ));
        }
        if !self.force {
            return Err(self.exists(path));
        }
        unlinkat(dirfd, name, AtFlags::empty())
            .map_err(|e| self.refused(path, format!("is {words} that could not be removed ({e})")))
    }

    /// Give the finished temporary file `temp` the name `name`, without replacing anything
    /// unless `--force`. The temporary name is gone afterwards, whatever happens.
    fn place(
        &self,
        dirfd: BorrowedFd<'_>,
        temp: &[u8],
        name: &[u8],
        path: &[u8],
    ) -> io::Result<()> {
        let result = match linkat(dirfd, temp, dirfd, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => self.replace(dirfd, temp, name, path),
            // A filesystem without hard links: check, then rename.
            Err(_) => match statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => self.replace(dirfd, temp, name, path),
                Err(_) => renameat(dirfd, temp, dirfd, name).map_err(io::Error::from),
            },
        };
        // After a rename the temporary name is already gone; the error is expected then.
        let _ = unlinkat(dirfd, temp, AtFlags::empty());
        result
    }

    /// `name` exists: rename `temp` over it with `--force` (never over a directory).
    fn replace(
        &self,
        dirfd: BorrowedFd<'_>,
        temp: &[u8],
        name: &[u8],
        path: &[u8],
    ) -> io::Result<()> {
        let (kind, _) = describe(dirfd, name);
        if kind == Some(FileType::Directory) {
            return Err(self.refused(
                path,
                "is a directory in the way; it is not replaced, not even with --force",
            ));
        }
        if !self.force {
            return Err(self.exists(path));
        }
        renameat(dirfd, temp, dirfd, name).map_err(io::Error::from)
    }

    /// Apply the mode and time of every directory made (or, with `--force`, taken over),
    /// deepest first. Call once, after every entry.
    pub fn finish(&mut self) -> io::Result<()> {
        self.parent = None;
        let dirs = std::mem::take(&mut self.dirs);
        for (path, meta) in dirs.iter().rev() {
            let fd = self.walk(path, false)?;
            self.settle(fd.as_fd(), *meta)?;
        }
        Ok(())
    }
}

impl Sink for DirWriter {
    fn dir(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        let force = self.force;
        let (dirfd, name) = self.parent(path)?;
        let dirfd = dirfd.try_clone_to_owned()?;
        match mkdirat(&dirfd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let (kind, _) = describe(dirfd.as_fd(), name);
                if kind == Some(FileType::Directory) {
                    // An existing directory is used as it is; with --force it takes the
                    // image's mode and time too.
                    if force {
                        self.dirs.push((path.to_vec(), meta));
                    }
                    return Ok(());
                }
                self.make_room(dirfd.as_fd(), name, path)?;
                mkdirat(&dirfd, name, Mode::from_raw_mode(0o700))?;
            }
            Err(e) => return Err(e.into()),
        }
        self.dirs.push((path.to_vec(), meta));
        Ok(())
    }

    fn file(&mut self, path: &[u8], meta: Meta, size: u64, data: &mut dyn Read) -> io::Result<()> {
        let (dirfd, name) = self.parent(path)?;
        let dirfd = dirfd.try_clone_to_owned()?;
        let pid = std::process::id();
        let (temp, fd) = loop {
            self.temp_seq += 1;
            let temp = format!(".layerscope-part.{pid}.{}", self.temp_seq).into_bytes();
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match openat(&dirfd, temp.as_slice(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => break (temp, fd),
                Err(Errno::EXIST) if !self.temp_seq.is_multiple_of(100) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let mut file = File::from(fd);
        let written = (|| -> io::Result<()> {
            let copied = io::copy(&mut data.take(size), &mut file)?;
            if copied != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file's content ended before its size",
                ));
            }
            file.flush()?;
            self.settle(file.as_fd(), meta)
        })();
        drop(file);
        if let Err(e) = written {
            let _ = unlinkat(&dirfd, temp.as_slice(), AtFlags::empty());
            return Err(e);
        }
        self.place(dirfd.as_fd(), &temp, name, path)
    }

    fn hardlink(&mut self, path: &[u8], target: &[u8], _meta: Meta) -> io::Result<()> {
        let Some((target_dir, target_name)) = split_last(target) else {
            return Err(self.refused(path, "a hard link to the output directory itself"));
        };
        let target_fd = self.walk(target_dir, false)?;
        let (dirfd, name) = self.parent(path)?;
        let dirfd = dirfd.try_clone_to_owned()?;
        // Flags 0: a link at the target is linked itself, never followed.
        match linkat(&target_fd, target_name, &dirfd, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                self.make_room(dirfd.as_fd(), name, path)?;
                linkat(&target_fd, target_name, &dirfd, name, AtFlags::empty())
                    .map_err(io::Error::from)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn symlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> io::Result<()> {
        if target.contains(&0) {
            return Err(self.refused(path, "a symbolic link whose target holds a NUL byte"));
        }
        let owners = self.owners;
        let (dirfd, name) = self.parent(path)?;
        let dirfd = dirfd.try_clone_to_owned()?;
        match symlinkat(target, &dirfd, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.make_room(dirfd.as_fd(), name, path)?;
                symlinkat(target, &dirfd, name)?;
            }
            Err(e) => return Err(e.into()),
        }
        if owners {
            chownat(
                &dirfd,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        utimensat(&dirfd, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)?;
        if points_out(path, target) {
            self.symlinks_out += 1;
        }
        Ok(())
    }

    fn fifo(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        let (dirfd, name) = self.parent(path)?;
        let dirfd = dirfd.try_clone_to_owned()?;
        let fifo = Mode::from_raw_mode(0o600);
        match mknodat(&dirfd, name, FileType::Fifo, fifo, 0) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.make_room(dirfd.as_fd(), name, path)?;
                mknodat(&dirfd, name, FileType::Fifo, fifo, 0)?;
            }
            Err(e) => return Err(e.into()),
        }
        // Opened without blocking (no writer needed) and without following a link.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = openat(&dirfd, name, flags, Mode::empty())?;
        self.settle(fd.as_fd(), meta)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let path = std::env::temp_dir()
                .join(format!("layerscope-dirwriter-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn meta(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
        }
    }

    #[test]
    fn entries_keep_modes_times_and_links() {
        let scratch = Scratch::new("modes");
        let out = scratch.0.join("out");
        let mut w = DirWriter::open(&out, false).unwrap();
        w.dir(b"etc", meta(0o750)).unwrap();
        w.dir(b"ro", meta(0o555)).unwrap();
        w.file(b"ro/inside", meta(0o400), 2, &mut &b"hi"[..])
            .unwrap();
        w.file(b"etc/passwd", meta(0o644), 5, &mut &b"root\n"[..])
            .unwrap();
        w.hardlink(b"etc/passwd-", b"etc/passwd", meta(0o644))
            .unwrap();
        w.symlink(b"etc/alias", b"passwd", meta(0o777)).unwrap();
        w.symlink(b"etc/abs", b"/etc/shadow", meta(0o777)).unwrap();
        w.symlink(b"etc/up", b"../../x", meta(0o777)).unwrap();
        w.fifo(b"run/pipe", meta(0o620)).unwrap();
        w.finish().unwrap();
        assert_eq!(w.symlinks_pointing_out(), 2);

        let md = |p: &str| std::fs::symlink_metadata(out.join(p)).unwrap();
        assert_eq!(std::fs::read(out.join("etc/passwd")).unwrap(), b"root\n");
        assert_eq!(md("etc/passwd").permissions().mode() & 0o7777, 0o644);
        assert_eq!(md("etc/passwd").mtime(), 1_600_000_000);
        assert_eq!(md("etc/passwd").ino(), md("etc/passwd-").ino());
        assert_eq!(md("etc").permissions().mode() & 0o7777, 0o750);
        assert_eq!(md("etc").mtime(), 1_600_000_000);
        assert_eq!(md("ro").permissions().mode() & 0o7777, 0o555);
        assert_eq!(
            std::fs::read_link(out.join("etc/abs")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert_eq!(md("etc/alias").mtime(), 1_600_000_000);
        use std::os::unix::fs::FileTypeExt;
        assert!(md("run/pipe").file_type().is_fifo());
        assert_eq!(md("run/pipe").permissions().mode() & 0o7777, 0o620);
        let leftovers: Vec<_> = std::fs::read_dir(out.join("etc"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("layerscope-part"))
            .collect();
        assert!(leftovers.is_empty());
        // Let the scratch directory be removed.
        std::fs::set_permissions(out.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn nothing_is_written_through_a_link_or_over_a_file_without_force() {
        let scratch = Scratch::new("links");
        let outside = scratch.0.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let out = scratch.0.join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("escape")).unwrap();
        std::fs::write(out.join("mine.txt"), b"user data").unwrap();

        let mut w = DirWriter::open(&out, false).unwrap();
        let err = w
            .file(b"escape/file", meta(0o644), 1, &mut &b"x"[..])
            .unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        let err = w.dir(b"escape/sub", meta(0o755)).unwrap_err();
        assert!(
            err.to_string().contains("refusing to write through it"),
            "{err}"
        );
        let err = w
            .file(b"mine.txt", meta(0o644), 1, &mut &b"x"[..])
            .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let err = w.symlink(b"mine.txt", b"/etc", meta(0o777)).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        for unsafe_path in [&b"../x"[..], b"/abs", b"a/./b", b"a//b", b""] {
            assert!(w
                .file(unsafe_path, meta(0o644), 0, &mut io::empty())
                .is_err());
        }
        assert_eq!(std::fs::read(out.join("mine.txt")).unwrap(), b"user data");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

        // With --force: the link in the way becomes a directory, the file is replaced; the
        // outside stays untouched all the same.
        let mut w = DirWriter::open(&out, true).unwrap();
        w.file(b"escape/file", meta(0o644), 1, &mut &b"x"[..])
            .unwrap();
        w.file(b"mine.txt", meta(0o600), 3, &mut &b"new"[..])
            .unwrap();
        assert!(std::fs::symlink_metadata(out.join("escape"))
            .unwrap()
            .is_dir());
        assert_eq!(std::fs::read(out.join("mine.txt")).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::create_dir(out.join("keep")).unwrap();
        let err = w
            .file(b"keep", meta(0o644), 0, &mut io::empty())
            .unwrap_err();
        assert!(err.to_string().contains("not even with --force"), "{err}");
    }

    #[test]
    fn a_file_that_fails_verification_leaves_nothing_under_its_name() {
        struct Failing(u8);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("mismatch"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let scratch = Scratch::new("fail");
        let mut w = DirWriter::open(&scratch.0, false).unwrap();
        assert!(w.file(b"a/b", meta(0o644), 10, &mut Failing(3)).is_err());
        assert_eq!(std::fs::read_dir(scratch.0.join("a")).unwrap().count(), 0);
    }

    #[test]
    fn links_pointing_out_are_told_apart() {
        assert!(points_out(b"a", b"/etc"));
        assert!(points_out(b"a", b"../x"));
        assert!(!points_out(b"a/b", b"../x"));
        assert!(points_out(b"a/b", b"../../x"));
        assert!(!points_out(b"a/b", b"./c/../d"));
    }
}
