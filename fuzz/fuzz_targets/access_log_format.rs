//! `--access-log-format`: Gunicorn-style `%(atom)s` formats, parsed once at start-up. Any
//! string either parses or is a configuration error; never a panic.
#![no_main]

use _juggler::log_format::{Atom, LogFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(format) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = LogFormat::new(Some(format), false) else {
        return;
    };
    let LogFormat::Atoms(atoms) = &parsed else {
        panic!("a format string gave {parsed:?}");
    };
    // Literal text between atoms is merged: never two text atoms in a row, never empty.
    for pair in atoms.windows(2) {
        assert!(!matches!(pair, [Atom::Text(_), Atom::Text(_)]), "{atoms:?}");
    }
    for a in atoms {
        if let Atom::Text(t) = a {
            assert!(!t.is_empty());
        }
    }
    // Every header the format names is captured lower-cased.
    for h in parsed.headers() {
        assert_eq!(h, h.to_ascii_lowercase());
    }
});
