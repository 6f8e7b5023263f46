//! Failed accepts, reported at most once a second. A process out of descriptors fails every
//! accept until a connection closes, and the listener stays readable all the while: one line
//! per attempt buried the log (78 lines in 4 s). The report says how often it failed since the
//! last one, the limit in force and what to do about it, which is what an operator needs.

use std::io;
use std::time::{Duration, Instant};

/// At most one report per this long.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The failures since the last report, and when that was.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_report: Option<Instant>,
    unreported: u64,
}

impl AcceptErrors {
    /// Counts a failed accept; returns the line to log when one is due.
    pub fn failed(&mut self, error: &io::Error, now: Instant) -> Option<String> {
        self.unreported += 1;
        if self
            .last_report
            .is_some_and(|last| now.duration_since(last) < REPORT_EVERY)
        {
            return None;
        }
        let count = std::mem::take(&mut self.unreported);
        let first = self.last_report.is_none();
        self.last_report = Some(now);
        Some(describe(error, count, first, open_files_limit()))
    }
}

fn describe(error: &io::Error, count: u64, first: bool, limit: Option<u64>) -> String {
    let times = match (first, count) {
        (true, _) => String::new(),
        (false, 1) => " (once since the last report)".to_owned(),
        (false, n) => format!(" ({n} times since the last report)"),
    };
    if !is_out_of_descriptors(error) {
        return format!("accept failed: {error}{times}");
    }
    let limit = match limit {
        Some(n) => format!("the limit is {n} open files"),
        None => "the open files limit is unknown".to_owned(),
    };
    format!(
        "accept failed: {error}{times}; {limit}: raise it (ulimit -n, or LimitNOFILE= in a \
         systemd unit) or bound the connections with --limit-concurrency"
    )
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE)
    )
}

/// The soft RLIMIT_NOFILE of this process (`None` when it cannot be read or is unlimited).
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn the_first_failure_is_reported_then_at_most_one_line_a_second_with_the_count() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        let first = errors.failed(&emfile(), t0).expect("the first is reported");
        assert!(!first.contains("since the last report"), "{first}");
        for ms in [1, 300, 999] {
            assert_eq!(
                errors.failed(&emfile(), t0 + Duration::from_millis(ms)),
                None
            );
        }
        let next = errors
            .failed(&emfile(), t0 + REPORT_EVERY)
            .expect("one a second");
        assert!(next.contains("(4 times since the last report)"), "{next}");
        let once = errors
            .failed(&emfile(), t0 + REPORT_EVERY * 3)
            .expect("after a quiet spell");
        assert!(once.contains("(once since the last report)"), "{once}");
    }

    #[test]
    fn out_of_descriptors_names_the_limit_and_the_remedies() {
        let line = describe(&emfile(), 3, false, Some(1024));
        assert!(line.contains("Too many open files"), "{line}");
        assert!(line.contains("the limit is 1024 open files"), "{line}");
        assert!(line.contains("ulimit -n"), "{line}");
        assert!(line.contains("--limit-concurrency"), "{line}");
        let enfile = describe(&io::Error::from_raw_os_error(libc::ENFILE), 1, true, None);
        assert!(
            enfile.contains("the open files limit is unknown"),
            "{enfile}"
        );
        assert!(enfile.contains("--limit-concurrency"), "{enfile}");
    }

    #[test]
    fn other_failures_give_no_descriptor_advice() {
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        let line = describe(&aborted, 2, false, Some(1024));
        assert!(line.starts_with("accept failed: "), "{line}");
        assert!(!line.contains("ulimit"), "{line}");
    }

    #[test]
    fn the_limit_read_is_the_soft_one() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in open_files_limit.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        let expected = (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur);
        assert_eq!(open_files_limit(), expected);
    }
}
