//! A regular file sent as a response body by the server itself: ASGI's
//! `http.response.pathsend` and WSGI's `wsgi.file_wrapper`. The bytes never pass through
//! Python; they are read in chunks as hyper asks for them, so a file of any size costs a
//! chunk or two of memory.
//!
//! Reads run on Tokio's blocking pool: a page-cache hit takes microseconds, but a cold read
//! from a slow disk would stall every other connection of the worker's I/O thread.

use std::fs::File;
use std::future::Future as _;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::task::JoinHandle;

/// How much one read takes: large enough for few hops to the blocking pool, small enough
/// that hyper's write queue holds memory flat.
pub const CHUNK: usize = 256 * 1024;

/// The part of a regular file to send: from `offset`, `len` bytes.
#[derive(Debug)]
pub struct FileRange {
    file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

impl FileRange {
    /// Opens `path` for sending whole. Anything but a regular file (a directory, a device, a
    /// pipe) is refused with the matching error, before any byte of the response is sent.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::from_file(File::open(path)?, 0)
    }

    /// A descriptor the app opened, from `offset` to the end. The descriptor must be our
    /// own (a dup): the app may close its copy while we send.
    pub fn from_fd(fd: OwnedFd, offset: u64) -> io::Result<Self> {
        Self::from_file(File::from(fd), offset)
    }

    fn from_file(file: File, offset: u64) -> io::Result<Self> {
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(Self {
            file: Arc::new(file),
            offset,
            len: meta.len().saturating_sub(offset),
        })
    }

    /// Sends no more than `limit` bytes (a Content-Length the app declared shorter).
    pub fn truncate(&mut self, limit: u64) {
        self.len = self.len.min(limit);
    }

    /// Sends `len` bytes from `start` (a byte range of the file), within what there is.
    pub fn select(&mut self, start: u64, len: u64) {
        let start = start.min(self.offset + self.len);
        let end = (start + len).min(self.offset + self.len);
        self.offset = start;
        self.len = end - start;
    }

    /// When the file was last changed, for validators (ETag, Last-Modified).
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        self.file.metadata().and_then(|m| m.modified()).ok()
    }

    /// The next chunk at `offset`, read on the calling thread.
    pub fn read_chunk(&self, offset: u64, max: usize) -> io::Result<Bytes> {
        read_at(&self.file, offset, max)
    }
}

/// Reads up to `len` bytes at `offset` without moving the file's position (pread), retrying
/// when a signal interrupts it.
fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    loop {
        match file.read_at(&mut buf, offset) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Bytes::from(buf));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Why a file body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum FileBodyError {
    #[error("reading the file to send failed: {0}")]
    Read(#[from] io::Error),
    /// The file shrank after its Content-Length was sent: the response cannot be completed.
    #[error("the file to send ended early")]
    Truncated,
    #[error("the file read was cancelled")]
    Cancelled,
}

/// The body of a file response: one read in flight on the blocking pool at a time.
pub struct FileBody {
    range: FileRange,
    /// Where the next read starts and how much is still to send.
    next: u64,
    left: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    pub fn new(range: FileRange) -> Self {
        Self {
            next: range.offset,
            left: range.len,
            range,
            reading: None,
        }
    }

    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// The next chunk, or None at the end. Must be polled inside a Tokio runtime.
    pub fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, FileBodyError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let reading = self.reading.get_or_insert_with(|| {
            let file = self.range.file.clone();
            let (offset, len) = (self.next, chunk_len(self.left));
            tokio::task::spawn_blocking(move || read_at(&file, offset, len))
        });
        let read = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.reading = None;
        let chunk = match read {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            Err(_) => return Poll::Ready(Some(Err(FileBodyError::Cancelled))),
        };
        if chunk.is_empty() {
            return Poll::Ready(Some(Err(FileBodyError::Truncated)));
        }
        let n = chunk.len() as u64;
        self.next += n;
        self.left -= n;
        Poll::Ready(Some(Ok(chunk)))
    }
}

fn chunk_len(left: u64) -> usize {
    usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn temp_file(content: &[u8]) -> (tempdir::Dir, std::path::PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("f");
        let mut f = File::create(&path).expect("create");
        f.write_all(content).expect("write");
        (dir, path)
    }

    /// A directory removed when the test ends (no dev-dependency for it).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let p = std::env::temp_dir()
                    .join(format!("juggler-file-test-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).expect("mkdir");
                Self(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    async fn collect(mut body: FileBody) -> Result<Vec<u8>, FileBodyError> {
        let mut out = Vec::new();
        while let Some(chunk) = std::future::poll_fn(|cx| body.poll_chunk(cx)).await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_file_is_read_whole_in_chunks() {
        let content: Vec<u8> = (0..CHUNK * 2 + 7).map(|i| (i % 251) as u8).collect();
        let (_dir, path) = temp_file(&content);
        let range = FileRange::open(&path).expect("open");
        assert_eq!(range.len, content.len() as u64);
        assert_eq!(collect(FileBody::new(range)).await.expect("read"), content);
    }

    #[tokio::test]
    async fn an_offset_and_a_shorter_limit_are_respected() {
        let (_dir, path) = temp_file(b"0123456789");
        let fd = OwnedFd::from(File::open(&path).expect("open"));
        let mut range = FileRange::from_fd(fd, 3).expect("range");
        assert_eq!(range.len, 7);
        range.truncate(4);
        assert_eq!(collect(FileBody::new(range)).await.expect("read"), b"3456");
    }

    #[tokio::test]
    async fn a_file_that_shrinks_while_sent_is_an_error_not_a_short_body() {
        let (_dir, path) = temp_file(b"0123456789");
        let range = FileRange::open(&path).expect("open");
        File::create(&path).expect("truncate");
        assert!(matches!(
            collect(FileBody::new(range)).await,
            Err(FileBodyError::Truncated)
        ));
    }

    #[test]
    fn missing_files_and_directories_are_refused() {
        let dir = tempdir::Dir::new();
        let missing = FileRange::open(&dir.0.join("nope")).expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let is_dir = FileRange::open(&dir.0).expect_err("a directory");
        assert_eq!(is_dir.raw_os_error(), Some(libc::EISDIR));
        let dev = FileRange::open(Path::new("/dev/null")).expect_err("a device");
        assert_eq!(dev.kind(), io::ErrorKind::InvalidInput);
    }
}
