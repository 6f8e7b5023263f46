//! Access log lines on their way to stdout: collected in a buffer and written in batches,
//! when the I/O thread is about to park or the buffer fills, so that a busy worker pays a
//! write per batch rather than per request.

use parking_lot::Mutex;

/// Written at once past this; also the most one `write` carries, so that lines from sibling
/// workers sharing a pipe are never interleaved mid-line (writes up to PIPE_BUF are atomic).
const BATCH: usize = 4096;

#[derive(Default)]
pub struct AccessOut {
    buf: Mutex<Vec<u8>>,
}

impl AccessOut {
    pub fn push(&self, line: &str) {
        let full = {
            let mut buf = self.buf.lock();
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            buf.len() >= BATCH
        };
        if full {
            self.flush();
        }
    }

    /// Writes what is buffered to stdout, whole lines at a time.
    pub fn flush(&self) {
        let data = {
            let mut buf = self.buf.lock();
            if buf.is_empty() {
                return;
            }
            std::mem::take(&mut *buf)
        };
        let mut rest = &data[..];
        while !rest.is_empty() {
            let cut = if rest.len() <= BATCH {
                rest.len()
            } else {
                // The last line end within a batch, or a whole overlong line.
                match rest[..BATCH].iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |i| i + 1),
                }
            };
            if !write_all(&rest[..cut]) {
                // stdout is gone (a closed pipe): the lines have nowhere to go.
                return;
            }
            rest = &rest[cut..];
        }
    }
}

fn write_all(mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: writes from a live slice to fd 1, which the process owns.
        let n = unsafe { libc::write(1, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        data = &data[n as usize..];
    }
    true
}
