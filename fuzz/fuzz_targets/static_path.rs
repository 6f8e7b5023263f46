//! `--static-path-mount`: the request path (still percent-encoded) below the route, decoded
//! into a file name under the directory. Whatever the path, the candidate must stay under
//! the directory before any symlink is followed: no `..` component, no NUL, and the
//! directory itself as its prefix.
#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, PathBuf};

use _juggler::config::StaticMount;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let mount = StaticMount {
        route: "/static".to_owned(),
        root: PathBuf::from("/srv/site/static"),
    };
    let Some(rest) = mount.strip(path) else {
        return;
    };
    assert!(rest.is_empty() || rest.starts_with('/'));
    let Some(file) = mount.candidate(rest) else {
        return;
    };
    assert!(file.starts_with(&mount.root), "{file:?} left the directory");
    let below = file.strip_prefix(&mount.root).expect("checked above");
    for c in below.components() {
        assert!(
            matches!(c, Component::Normal(_)),
            "{file:?} has a {c:?} component"
        );
    }
    assert!(
        !file.as_os_str().as_bytes().contains(&0),
        "{file:?} has a NUL"
    );
});
