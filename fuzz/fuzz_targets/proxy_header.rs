//! The PROXY protocol header parser (`--proxy-protocol`): whatever a peer sends, it answers
//! without panicking, never claims more bytes than it was given, and a header's meaning does
//! not depend on what follows it (the client's first request bytes).
#![no_main]

use _juggler::transport::proxy_header::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse(data) else {
        return;
    };
    if let Parsed::Header { len, source } = parsed {
        assert!(len > 0 && len <= data.len(), "{len} of {}", data.len());
        // The header alone parses the same: nothing after it was read.
        assert_eq!(
            parse(&data[..len]),
            Ok(Parsed::Header {
                len,
                source: source.clone()
            })
        );
        // A header cut short is only ever waited for, never taken for something else.
        for cut in [len - 1, len / 2] {
            if cut > 0 {
                assert_eq!(parse(&data[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
            }
        }
    }
});
