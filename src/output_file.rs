//! Writing a file the user named (a JSON report, a downloaded blob) without damaging what is
//! there: a regular file is replaced whole through a temporary file and a rename, so no reader
//! sees half of it, and it keeps its permissions; a symbolic link stays a link and its target
//! is replaced; anything else — `/dev/null`, `/dev/stdout`, a named pipe — is written in place,
//! because renaming over a device would replace the device itself with a plain file.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` by the rules of the module documentation.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |out| out.write_all(bytes))
}

/// Write what `fill` writes to `path` by the rules of the module documentation, as it is
/// written: a large report need not be held in memory whole first.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
) -> io::Result<()> {
    match placement(path)? {
        Placement::Replace(_) => stage_with(path, fill)?.commit(),
        Placement::InPlace => create_filled(path, fill),
    }
}

/// Create (or truncate) `path` and write what `fill` writes into it, buffered.
fn create_filled(
    path: &Path,
    fill: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut out = io::BufWriter::new(fs::File::create(path)?);
    fill(&mut out)?;
    out.flush()
}

/// Give the finished file `temp` the name `path` (replacing what is there) by the rules of the
/// module documentation; `temp` is gone afterwards unless an error is returned.
pub fn replace_with(temp: &Path, path: &Path) -> io::Result<()> {
    match placement(path)? {
        Placement::Replace(target) => replace(temp, &target),
        Placement::InPlace => {
            let mut from = fs::File::open(temp)?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)?;
            io::copy(&mut from, &mut to)?;
            fs::remove_file(temp)
        }
    }
}

/// A temporary name in the same directory as `target` (a rename must not cross filesystems).
pub fn temp_beside(target: &Path) -> PathBuf {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_string());
    dir.join(format!(".{name}.{}.layerscope-part", std::process::id()))
}

enum Placement {
    /// Rename a temporary file onto this regular file (or new name).
    Replace(PathBuf),
    /// Write into the existing non-regular file.
    InPlace,
}

fn placement(path: &Path) -> io::Result<Placement> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            // Through a symlink, replace what it points to and leave the link alone.
            let target = if fs::symlink_metadata(path)?.file_type().is_symlink() {
                fs::canonicalize(path)?
            } else {
                path.to_path_buf()
            };
            Ok(Placement::Replace(target))
        }
        Ok(_) => Ok(Placement::InPlace),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A dangling symlink: writing through it creates its target, as `>` would.
            if fs::symlink_metadata(path).is_ok() {
                Ok(Placement::InPlace)
            } else {
                Ok(Placement::Replace(path.to_path_buf()))
            }
        }
        Err(e) => Err(e),
    }
}

/// Rename `temp` onto `target`, carrying over the permissions of the file it replaces.
fn replace(temp: &Path, target: &Path) -> io::Result<()> {
    if let Ok(meta) = fs::metadata(target) {
        fs::set_permissions(temp, meta.permissions())?;
    }
    fs::rename(temp, target)
}

/// A file written beside its target but not yet in place. Several outputs are staged first
/// and committed only once every one of them could be written, so a failure changes none of
/// them. Dropped uncommitted, the temporary file is removed.
#[derive(Debug)]
pub struct Staged {
    target: PathBuf,
    /// The temporary file, for targets that are replaced whole.
    temp: Option<PathBuf>,
    /// What a target written in place (a device, a pipe) gets at the commit: it cannot be
    /// staged beside the target.
    in_place: Option<Held>,
}

/// The bytes for a target written in place, held until the commit.
#[derive(Debug)]
enum Held {
    /// In an unnamed temporary file (see [`unnamed_temp_file`]), read from its start.
    Spooled(fs::File),
    /// In memory, where no temporary file could be made.
    Bytes(Vec<u8>),
}

/// A new temporary file that has no name: it is removed as soon as it is open, so nothing is
/// left behind whatever happens next. `None` when the temporary directory takes no file.
fn unnamed_temp_file() -> Option<fs::File> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static MADE: AtomicU32 = AtomicU32::new(0);
    let name = std::env::temp_dir().join(format!(
        ".layerscope-spool.{}.{}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&name)
        .ok()?;
    let _ = fs::remove_file(&name);
    Some(file)
}

/// Write `bytes` beside `path` (by the rules of the module documentation), ready to
/// [`Staged::commit`]. A directory at `path`, or a directory that cannot be written, is an
/// error here, before anything changes.
pub fn stage(path: &Path, bytes: &[u8]) -> io::Result<Staged> {
    stage_with(path, |out| out.write_all(bytes))
}

/// [`stage`] what `fill` writes, as it is written: into the temporary file, so a large report
/// is not held in memory whole. A target written in place (a device, a pipe) cannot be written
/// before every output is ready: its bytes wait in an unnamed file of the temporary directory
/// (in memory only when none can be made there) and are copied in at the commit.
pub fn stage_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
) -> io::Result<Staged> {
    if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    match placement(path)? {
        Placement::Replace(target) => {
            let temp = temp_beside(&target);
            if let Err(e) = create_filled(&temp, fill) {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
            Ok(Staged {
                target,
                temp: Some(temp),
                in_place: None,
            })
        }
        Placement::InPlace => {
            let held = match unnamed_temp_file() {
                Some(file) => {
                    use std::io::Seek as _;
                    let mut out = io::BufWriter::with_capacity(64 * 1024, file);
                    fill(&mut out)?;
                    let mut file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
                    file.rewind()?;
                    Held::Spooled(file)
                }
                None => {
                    let mut bytes = Vec::new();
                    fill(&mut bytes)?;
                    Held::Bytes(bytes)
                }
            };
            Ok(Staged {
                target: path.to_path_buf(),
                temp: None,
                in_place: Some(held),
            })
        }
    }
}

impl Staged {
    /// Put the file in place.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(temp) = self.temp.take() {
            let result = replace(&temp, &self.target);
            if result.is_err() {
                let _ = fs::remove_file(&temp);
            }
            return result;
        }
        match self.in_place.take() {
            Some(Held::Spooled(mut spooled)) => {
                let mut target = fs::File::create(&self.target)?;
                io::copy(&mut spooled, &mut target).map(drop)
            }
            Some(Held::Bytes(bytes)) => fs::write(&self.target, bytes),
            None => Ok(()),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir()
                .join(format!("layerscope-output-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary() {
        let dir = Dir::new("half");
        let path = dir.0.join("report.json");
        fs::write(&path, b"old report").unwrap();
        let failed = write_with(&path, |out| {
            out.write_all(b"{\"partial\":")?;
            Err(io::Error::other("the serialiser gave up"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old report");
        assert_eq!(
            fs::read_dir(&dir.0).unwrap().count(),
            1,
            "no temporary left"
        );
        write_with(&path, |out| out.write_all(b"{}\n")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");

        // Staged the same way: nothing changes and nothing is left behind.
        let failed = stage_with(&path, |out| {
            out.write_all(b"{\"partial\":")?;
            Err(io::Error::other("the serialiser gave up"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
        let staged = stage_with(&path, |out| out.write_all(b"[1]\n")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n", "not before the commit");
        staged.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[1]\n");
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_regular_file_is_replaced_whole_and_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Dir::new("regular");
        let path = dir.0.join("report.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(&dir.0).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_stays_a_link_and_its_target_is_written() {
        let dir = Dir::new("symlink");
        let target = dir.0.join("real.json");
        let link = dir.0.join("link.json");
        fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new");

        let dangling = dir.0.join("dangling.json");
        std::os::unix::fs::symlink(dir.0.join("later.json"), &dangling).unwrap();
        write(&dangling, b"created").unwrap();
        assert!(fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(dir.0.join("later.json")).unwrap(), b"created");
    }

    /// A named pipe in `dir`.
    #[cfg(unix)]
    fn fifo_in(dir: &Dir) -> PathBuf {
        let fifo = dir.0.join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        fifo
    }

    /// What is written into the pipe `fifo`, read to its end on another thread.
    #[cfg(unix)]
    fn read_to_end(fifo: &Path) -> std::thread::JoinHandle<Vec<u8>> {
        let fifo = fifo.to_path_buf();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    }

    /// A named pipe stands in for `/dev/null`: a file that is not regular must be written
    /// into, never renamed over (that once replaced this machine's `/dev/null`).
    #[cfg(unix)]
    #[test]
    fn a_named_pipe_is_written_in_place_not_replaced() {
        let dir = Dir::new("fifo");
        let fifo = fifo_in(&dir);
        let reader = read_to_end(&fifo);
        write(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

        let temp = dir.0.join("finished");
        fs::write(&temp, b"blob bytes").unwrap();
        let reader = read_to_end(&fifo);
        replace_with(&temp, &fifo).unwrap();
        assert_eq!(reader.join().unwrap(), b"blob bytes");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(!temp.exists());
    }

    /// A pipe cannot be staged beside: its bytes wait in a temporary file that has no name
    /// (never in memory) and reach the pipe at the commit.
    #[cfg(unix)]
    #[test]
    fn a_staged_pipe_gets_its_bytes_at_the_commit_from_a_nameless_spool() {
        let dir = Dir::new("spool");
        let fifo = fifo_in(&dir);
        let report: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let staged = stage_with(&fifo, |out| out.write_all(&report)).unwrap();
        assert!(matches!(staged.in_place, Some(Held::Spooled(_))));
        let spools = || {
            let prefix = format!(".layerscope-spool.{}.", std::process::id());
            fs::read_dir(std::env::temp_dir())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                })
                .count()
        };
        assert_eq!(spools(), 0, "the spool has no name");
        let reader = read_to_end(&fifo);
        staged.commit().unwrap();
        assert_eq!(reader.join().unwrap(), report);
    }

    #[cfg(unix)]
    #[test]
    fn staged_files_change_nothing_until_committed() {
        let dir = Dir::new("staged");
        let a = dir.0.join("a.xml");
        let b = dir.0.join("b.json");
        fs::write(&a, b"old a").unwrap();
        let staged_a = stage(&a, b"new a").unwrap();
        let staged_b = stage(&b, b"new b").unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        assert!(!b.exists());
        // A target that cannot be staged fails before anything is in place.
        assert!(stage(&dir.0.join("missing/c.md"), b"c").is_err());
        assert!(stage(&dir.0, b"dir").is_err());
        staged_a.commit().unwrap();
        staged_b.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(fs::read(&b).unwrap(), b"new b");

        let dropped = stage(&a, b"never").unwrap();
        drop(dropped);
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(
            fs::read_dir(&dir.0).unwrap().count(),
            2,
            "no temporary file left"
        );
    }
}
