//! The Python stack of the event loop thread, taken from another thread while the loop is
//! stuck: in a `time.sleep` (the GIL released) as well as in a CPU loop or a long C call
//! (the GIL held).
//!
//! The ways weighed: `sys._current_frames()` needs the GIL, which a loop stuck in one C call
//! (a big `json.dumps`, a regex) never lets go of until the call returns, and by then the
//! stack has moved on; a Python signal handler runs only between bytecodes, so not during
//! such a call either, and is the app's to install; reading the interpreter's frames from
//! Rust needs CPython's private structures, which change with each version. What remains is
//! CPython's own crash dumper: `faulthandler`, registered for a signal with
//! `all_threads=False`, writes the stack of the thread that receives the signal from the C
//! signal handler, without the GIL, and `pthread_kill` aims the signal at the loop thread. The
//! supervisor asks a hung worker for its threads' stacks the same way (SIGUSR2,
//! `children.py`); this has a signal and a pipe of its own, so the two dumps never mix.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Once the dump has begun, this long without a byte means it is complete. A dump that
/// takes longer (the loop thread preempted mid-dump) loses its outermost frames only: the
/// innermost, where the loop is stuck, come first.
const QUIET: Duration = Duration::from_millis(50);
/// A thread that does not answer within this (in an uninterruptible disk wait) has no stack.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// More than faulthandler writes for its 100 frames at most.
const MAX_DUMP: usize = 256 * 1024;

/// A real-time signal that nothing else in a worker uses (the app's handlers, asyncio's and
/// the supervisor's are on standard signals).
fn dump_signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

/// The loop thread's stack, on demand, from any thread.
pub struct ThreadStack {
    signal: libc::c_int,
    thread: libc::pthread_t,
    read: OwnedFd,
    /// faulthandler writes here; kept open for as long as it is registered.
    _write: OwnedFd,
}

impl ThreadStack {
    /// For the calling thread (the loop thread): registers faulthandler's dumper for our
    /// signal, writing to a pipe of ours. Both ends are non-blocking, so a dump that found the
    /// pipe full would lose its tail rather than stall the loop thread in its signal handler.
    pub fn of_this_thread(py: Python<'_>) -> PyResult<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass; checked below.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(crate::error::Error::from(io::Error::last_os_error()).into());
        }
        // SAFETY: two fresh descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let signal = dump_signal();
        let kwargs = PyDict::new(py);
        kwargs.set_item("file", write.as_raw_fd())?;
        kwargs.set_item("all_threads", false)?;
        kwargs.set_item("chain", false)?;
        py.import("faulthandler")?
            .call_method("register", (signal,), Some(&kwargs))?;
        Ok(Self {
            signal,
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            read,
            _write: write,
        })
    }

    /// Any thread, without the GIL: the thread's stack as faulthandler writes it, most recent
    /// call first; None if it did not answer. The thread must still be running.
    pub fn take(&self) -> Option<String> {
        // A dump that came too late last time must not pass for this one.
        while let Some(n) = self.read_some(&mut [0; 4096]) {
            if n == 0 {
                break;
            }
        }
        // SAFETY: the thread is alive (the watchdog stops before the loop thread ends), and
        // the signal's handler is faulthandler's, which only writes to our pipe.
        if unsafe { libc::pthread_kill(self.thread, self.signal) } != 0 {
            return None;
        }
        let mut dump = Vec::new();
        let deadline = Instant::now() + ANSWER_WITHIN;
        let mut buf = [0u8; 16 * 1024];
        while dump.len() < MAX_DUMP {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if dump.is_empty() {
                left
            } else {
                QUIET.min(left)
            };
            if wait.is_zero() || !self.poll(wait) {
                break;
            }
            match self.read_some(&mut buf) {
                Some(0) | None => {}
                Some(n) => dump.extend_from_slice(&buf[..n]),
            }
        }
        (!dump.is_empty()).then(|| String::from_utf8_lossy(&dump).into_owned())
    }

    /// Whether the pipe became readable within `wait`.
    fn poll(&self, wait: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(wait.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd; EINTR reads as "not yet", and the caller's deadline bounds
        // the retries.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Bytes read (0 when nothing is waiting), None on an error.
    fn read_some(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(n) => Some(n),
            Err(_) if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => Some(0),
            Err(_) => None,
        }
    }

    /// GIL held, on stopping: faulthandler lets go of our signal and pipe.
    pub fn release(&self, py: Python<'_>) {
        let unregistered = py
            .import("faulthandler")
            .and_then(|f| f.call_method1("unregister", (self.signal,)));
        if let Err(e) = unregistered {
            e.print(py);
        }
    }
}

/// A frame of a faulthandler dump: `  File "path", line 12 in name`.
#[derive(Debug, PartialEq, Eq)]
struct Frame<'a> {
    file: &'a str,
    line: u32,
    name: &'a str,
}

fn parse_frame(line: &str) -> Option<Frame<'_>> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (file, rest) = rest.rsplit_once("\", line ")?;
    let (number, name) = rest.split_once(" in ")?;
    Some(Frame {
        file,
        line: number.trim().parse().ok()?,
        name: name.trim_end(),
    })
}

/// How many of `frames` (outermost first) to leave out of a report: those up to the last
/// one in juggler's own package (`own_dir`), which lead from the command line through the
/// supervisor's fork to the worker's event loop; never the innermost frame.
fn own_outer_frames(frames: &[&str], own_dir: &str) -> usize {
    let last_own = frames.iter().rposition(|line| {
        parse_frame(line).is_some_and(|f| f.file.starts_with(own_dir) || f.file == "<frozen runpy>")
    });
    match last_own {
        Some(i) if i + 1 < frames.len() => i + 1,
        _ => 0,
    }
}

/// A dump as a Python traceback reads: most recent call last, each frame with its source
/// line (from `linecache`, which needs the GIL), juggler's own outer frames left out (see
/// [`own_outer_frames`]). Lines that are not frames are kept.
pub fn format_dump(py: Python<'_>, dump: &str, own_dir: &str) -> String {
    let linecache = py.import("linecache").ok();
    let source = |file: &str, line: u32| -> Option<String> {
        let text = linecache
            .as_ref()?
            .call_method1("getline", (file, line))
            .ok()?
            .extract::<String>()
            .ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    };
    let lines: Vec<&str> = dump
        .lines()
        .rev()
        .filter(|l| {
            !(l.trim().is_empty() || l.starts_with("Stack (") || l.starts_with("Current thread"))
        })
        .collect();
    let skipped = own_outer_frames(&lines, own_dir);
    let mut out = String::new();
    if skipped > 0 {
        out.push_str(&format!(
            "  ({skipped} outer frames, from juggler's command line to the worker's event loop, \
             left out)\n"
        ));
    }
    for line in &lines[skipped..] {
        match parse_frame(line) {
            Some(f) => {
                out.push_str(&format!(
                    "  File \"{}\", line {}, in {}\n",
                    f.file, f.line, f.name
                ));
                if let Some(code) = source(f.file, f.line) {
                    out.push_str(&format!("    {code}\n"));
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_a_faulthandler_dump_are_parsed() {
        assert_eq!(
            parse_frame("  File \"/srv/app.py\", line 12 in handler"),
            Some(Frame {
                file: "/srv/app.py",
                line: 12,
                name: "handler"
            })
        );
        // A path with the separator in it: the last one counts.
        assert_eq!(
            parse_frame("  File \"/a\", line 1 in b/x.py\", line 7 in <module>"),
            Some(Frame {
                file: "/a\", line 1 in b/x.py",
                line: 7,
                name: "<module>"
            })
        );
        assert_eq!(parse_frame("Stack (most recent call first):"), None);
        assert_eq!(parse_frame("  <no Python frame>"), None);
        assert_eq!(parse_frame("  File \"x.py\", line ??? in f"), None);
    }

    #[test]
    fn juggler_s_own_outer_frames_are_left_out_but_never_the_innermost() {
        let frames = [
            "  File \"<frozen runpy>\", line 198 in _run_module_as_main",
            "  File \"/x/juggler/cli.py\", line 62 in main",
            "  File \"/x/juggler/worker.py\", line 83 in run",
            "  File \"/py/asyncio/runners.py\", line 118 in run",
            "  File \"/srv/app.py\", line 9 in app",
        ];
        assert_eq!(own_outer_frames(&frames, "/x/juggler/"), 3);
        assert_eq!(own_outer_frames(&frames[3..], "/x/juggler/"), 0);
        assert_eq!(
            own_outer_frames(&frames[..3], "/x/juggler/"),
            0,
            "stuck in juggler's own code: the whole stack"
        );
        assert_eq!(own_outer_frames(&[], "/x/juggler/"), 0);
    }
}
