//! The on-disk cache that makes reopening an image instant: blobs by digest (layers from a
//! registry or an engine, configs) and each layer's index by its diff_id, so a second look at
//! an image reads no layer at all.
//!
//! Layout under the cache directory:
//! ```text
//! blobs/ALG/HEX          a blob, exactly as its digest names it
//! index/vN/ALG/HEX       a layer index (binary, versioned, checksummed; N = format version)
//! trees/vN/ALG/HEX       a whole image's merged model, keyed by its chain of diff_ids
//!                        (binary, versioned, checksummed), so a reopen merges nothing
//! records/KIND/ALG/HEX   a small JSON record (an engine image id → its manifest and config)
//! tmp/                   files being written
//! ```
//! Every entry is written to a file in `tmp/`, checked, then renamed into place, so a reader
//! sees a whole entry or none, and two runs sharing the cache never see each other's halves.
//! Every read is checked again (blob digests, index checksums): a damaged entry is removed and
//! the caller fetches the data anew. Recency is the file's modification time, refreshed on
//! each hit; when the cache outgrows its limit, the least recently used entries go.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, Verifier};
use crate::layer::{LayerIndex, INDEX_FORMAT_VERSION};
use crate::tree::{FileTree, SNAPSHOT_FORMAT_VERSION};

/// The default size limit: 5 GiB.
pub const DEFAULT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;
/// Environment variable naming the cache directory.
pub const DIR_ENV: &str = "LAYERSCOPE_CACHE_DIR";
/// Environment variable giving the size limit.
pub const SIZE_ENV: &str = "LAYERSCOPE_CACHE_SIZE";
/// Temporary files older than this are left over from a run that died: removed on eviction.
const STALE_TMP: Duration = Duration::from_secs(3600);
/// Small blobs (configs) read whole from the cache up to this size.
const SMALL_BLOB_LIMIT: u64 = 16 * 1024 * 1024;

/// Distinguishes temporary files of one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The cache directory the environment names: `$LAYERSCOPE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/layerscope`, else `~/.cache/layerscope`.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("layerscope"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache").join("layerscope"))
}

/// What the cache holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Blob files.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Layer index files.
    pub indexes: u64,
    /// Their bytes.
    pub index_bytes: u64,
    /// Merged models of whole images.
    pub models: u64,
    /// Their bytes.
    pub model_bytes: u64,
}

impl Usage {
    /// All bytes.
    pub fn total_bytes(&self) -> u64 {
        self.blob_bytes + self.index_bytes + self.model_bytes
    }
}

/// A cache directory and its size limit.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    limit: u64,
}

/// One cached file, for eviction.
struct Item {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

impl Cache {
    /// Use `root` (created if missing) with a size limit of `limit` bytes.
    pub fn open(root: &Path, limit: u64) -> io::Result<Cache> {
        for sub in ["blobs", "index", "tmp"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
            limit,
        })
    }

    /// A cache at `root` that is only looked at (for `layerscope cache`): nothing is created.
    pub fn at(root: &Path, limit: u64) -> Cache {
        Cache {
            root: root.to_path_buf(),
            limit,
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The size limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    fn index_dir(&self) -> PathBuf {
        self.root
            .join("index")
            .join(format!("v{INDEX_FORMAT_VERSION}"))
    }

    fn index_path(&self, diff_id: &Digest) -> PathBuf {
        self.index_dir()
            .join(diff_id.algorithm().name())
            .join(diff_id.hex())
    }

    fn tree_path(&self, chain: &Digest) -> PathBuf {
        self.root
            .join("trees")
            .join(format!("v{SNAPSHOT_FORMAT_VERSION}"))
            .join(chain.algorithm().name())
            .join(chain.hex())
    }

    /// The key of an image's merged model: a digest of its layers' diff_ids, in order.
    pub fn chain_key<'a>(diff_ids: impl IntoIterator<Item = &'a Digest>) -> Digest {
        let mut text = String::new();
        for d in diff_ids {
            text.push_str(&d.to_string());
            text.push('\n');
        }
        Digest::sha256_of(text.as_bytes())
    }

    /// The merged model stored under `chain` (see [`Cache::chain_key`]), when cached and
    /// intact. A damaged one is removed.
    pub fn load_tree(&self, chain: &Digest) -> Option<FileTree> {
        let path = self.tree_path(chain);
        let len = fs::metadata(&path).ok()?.len();
        // One reader per part, each from its own offset, so two threads read at once.
        let open = |at: u64| {
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(at))?;
            Ok(file)
        };
        match FileTree::read_snapshot(open, len) {
            Ok(tree) => {
                touch(&path);
                Some(tree)
            }
            Err(_) => {
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Store an image's merged model under `chain`.
    pub fn store_tree(&self, chain: &Digest, tree: &FileTree) -> io::Result<()> {
        let (tmp, file) = self.temp_file()?;
        // The snapshot writer hands the file whole chunks already: no buffer in between.
        let written = tree.write_snapshot(file);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.publish(&tmp, &self.tree_path(chain))
    }

    fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir)?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{}.{}.{nanos}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = File::options().write(true).create_new(true).open(&path)?;
        Ok((path, file))
    }

    /// Move a finished temporary file into place.
    fn publish(&self, tmp: &Path, target: &Path) -> io::Result<()> {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let result = fs::rename(tmp, target);
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    /// The index of the layer whose uncompressed tar is `diff_id`, when cached and intact.
    /// A damaged one is removed.
    pub fn load_index(&self, diff_id: &Digest) -> Option<LayerIndex> {
        let path = self.index_path(diff_id);
        let bytes = fs::read(&path).ok()?;
        match LayerIndex::decode(&bytes) {
            Ok(index) if index.diff_id() == diff_id => {
                touch(&path);
                Some(index)
            }
            _ => {
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Store a layer's index under its diff_id.
    pub fn store_index(&self, index: &LayerIndex) -> io::Result<()> {
        let (tmp, mut file) = self.temp_file()?;
        // The index goes out in pieces as it is encoded: a big one is never in memory whole.
        let written = index.write_to(&mut file).and_then(|()| file.flush());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        drop(file);
        self.publish(&tmp, &self.index_path(index.diff_id()))
    }

    fn record_path(&self, kind: &str, key: &Digest) -> PathBuf {
        self.root
            .join("records")
            .join(kind)
            .join(key.algorithm().name())
            .join(key.hex())
    }

    /// A small record stored under `kind` and `key` (the caller checks what it reads, and
    /// treats anything unusable as absent after [`Cache::remove_record`]).
    pub fn load_record(&self, kind: &str, key: &Digest) -> Option<Vec<u8>> {
        let path = self.record_path(kind, key);
        let bytes = fs::read(&path).ok()?;
        touch(&path);
        Some(bytes)
    }

    /// Store a small record under `kind` and `key`.
    pub fn store_record(&self, kind: &str, key: &Digest, bytes: &[u8]) -> io::Result<()> {
        let (tmp, mut file) = self.temp_file()?;
        let written = file.write_all(bytes).and_then(|()| file.flush());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        drop(file);
        self.publish(&tmp, &self.record_path(kind, key))
    }

    /// Forget a record found unusable.
    pub fn remove_record(&self, kind: &str, key: &Digest) {
        let _ = fs::remove_file(self.record_path(kind, key));
    }

    /// Whether the index of `diff_id` is cached (not checked; [`Cache::load_index`] does).
    pub fn has_index(&self, diff_id: &Digest) -> bool {
        self.index_path(diff_id).is_file()
    }

    /// Where the blob `digest` is cached, when it is (not yet checked: a reader verifies it
    /// as it reads, see [`Cache::remove_blob`]).
    pub fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.blob_path(digest);
        if path.is_file() {
            touch(&path);
            Some(path)
        } else {
            None
        }
    }

    /// Forget a blob found damaged.
    pub fn remove_blob(&self, digest: &Digest) {
        let _ = fs::remove_file(self.blob_path(digest));
    }

    /// A small blob (a config) whole, verified; a damaged one is removed.
    pub fn read_small_blob(&self, digest: &Digest, size: Option<u64>) -> Option<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).ok()?;
        let mut bytes = Vec::new();
        file.take(SMALL_BLOB_LIMIT + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        let mut verifier = Verifier::new(digest, size);
        if verifier
            .update(&bytes)
            .and_then(|()| verifier.finish())
            .is_err()
        {
            let _ = fs::remove_file(&path);
            return None;
        }
        touch(&path);
        Some(bytes)
    }

    /// Store a small blob already verified against `digest`.
    pub fn store_small_blob(&self, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        let mut writer = self.blob_writer(digest)?;
        writer.write_all(bytes)?;
        writer.commit(bytes.len() as u64)
    }

    /// A writer for the blob `digest`: bytes go to a temporary file, which
    /// [`BlobWriter::commit`] renames into place once the caller has verified the whole blob.
    /// Dropped uncommitted, the temporary file is removed.
    pub fn blob_writer(&self, digest: &Digest) -> io::Result<BlobWriter> {
        let (tmp, file) = self.temp_file()?;
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            target: self.blob_path(digest),
            written: 0,
        })
    }

    fn items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        for dir in [
            self.root.join("blobs"),
            self.root.join("index"),
            self.root.join("trees"),
            self.root.join("records"),
        ] {
            collect_files(&dir, &mut items);
        }
        items
    }

    /// Count what the cache holds.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        let mut blobs = Vec::new();
        collect_files(&self.root.join("blobs"), &mut blobs);
        let mut indexes = Vec::new();
        collect_files(&self.root.join("index"), &mut indexes);
        let mut models = Vec::new();
        collect_files(&self.root.join("trees"), &mut models);
        usage.blobs = blobs.len() as u64;
        usage.blob_bytes = blobs.iter().map(|i| i.size).sum();
        usage.indexes = indexes.len() as u64;
        usage.index_bytes = indexes.iter().map(|i| i.size).sum();
        usage.models = models.len() as u64;
        usage.model_bytes = models.iter().map(|i| i.size).sum();
        usage
    }

    /// Remove least recently used entries until the cache fits its limit, and temporary files
    /// that a dead run left behind. Returns the bytes freed.
    pub fn evict(&self) -> u64 {
        let mut tmp = Vec::new();
        collect_files(&self.root.join("tmp"), &mut tmp);
        let now = SystemTime::now();
        for item in tmp {
            if now.duration_since(item.used).unwrap_or_default() > STALE_TMP {
                let _ = fs::remove_file(&item.path);
            }
        }
        let mut items = self.items();
        let mut total: u64 = items.iter().map(|i| i.size).sum();
        if total <= self.limit {
            return 0;
        }
        items.sort_by_key(|i| i.used);
        let mut freed = 0;
        for item in items {
            if total <= self.limit {
                break;
            }
            if fs::remove_file(&item.path).is_ok() {
                total -= item.size;
                freed += item.size;
            }
        }
        freed
    }

    /// Empty the cache (blobs, indexes, temporary files); the directory itself stays.
    /// Returns what was there.
    pub fn clear(&self) -> io::Result<Usage> {
        let before = self.usage();
        for sub in ["blobs", "index", "trees", "records", "tmp"] {
            match fs::remove_dir_all(self.root.join(sub)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(before)
    }
}

/// Mark an entry as just used.
fn touch(path: &Path) {
    if let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

fn collect_files(dir: &Path, out: &mut Vec<Item>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            collect_files(&entry.path(), out);
        } else if meta.is_file() {
            out.push(Item {
                path: entry.path(),
                size: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
}

/// A blob being written to the cache (see [`Cache::blob_writer`]).
pub struct BlobWriter {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    target: PathBuf,
    written: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Publish the blob, provided exactly `expected_size` bytes were written. The caller has
    /// verified the digest of those bytes (they streamed through a verifier).
    pub fn commit(mut self, expected_size: u64) -> io::Result<()> {
        let Some(file) = self.file.take() else {
            return Err(io::Error::other("the blob writer was already used"));
        };
        if self.written != expected_size {
            let _ = fs::remove_file(&self.tmp);
            return Err(io::Error::other(format!(
                "wrote {} of {expected_size} bytes",
                self.written
            )));
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        drop(file);
        if let Some(parent) = self.target.parent() {
            fs::create_dir_all(parent)?;
        }
        let result = fs::rename(&self.tmp, &self.target);
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the blob writer was already used"))?;
        let n = file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "layerscope-cache-{tag}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn small_blobs_round_trip_and_damage_is_detected() {
        let root = temp_root("small");
        let cache = Cache::open(&root, DEFAULT_LIMIT).expect("cache dir");
        let bytes = b"{\"config\":1}".to_vec();
        let digest = Digest::sha256_of(&bytes);
        assert_eq!(cache.read_small_blob(&digest, None), None);
        cache.store_small_blob(&digest, &bytes).expect("stored");
        assert_eq!(
            cache.read_small_blob(&digest, Some(12)),
            Some(bytes.clone())
        );
        fs::write(cache.blob_path(&digest), b"{\"config\":2}").expect("damage");
        assert_eq!(cache.read_small_blob(&digest, None), None);
        assert!(
            !cache.blob_path(&digest).exists(),
            "a damaged blob is removed"
        );
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_uncommitted_or_short_blob_leaves_nothing() {
        let root = temp_root("writer");
        let cache = Cache::open(&root, DEFAULT_LIMIT).expect("cache dir");
        let digest = Digest::sha256_of(b"abc");
        {
            let mut w = cache.blob_writer(&digest).expect("writer");
            w.write_all(b"ab").expect("write");
        }
        let mut w = cache.blob_writer(&digest).expect("writer");
        w.write_all(b"ab").expect("write");
        assert!(w.commit(3).is_err());
        assert_eq!(cache.blob_file(&digest), None);
        assert_eq!(fs::read_dir(root.join("tmp")).expect("tmp").count(), 0);
        let _ = fs::remove_dir_all(&root);
    }
}
