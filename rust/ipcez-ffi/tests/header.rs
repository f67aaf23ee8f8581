//! The committed header must be what cbindgen makes of the code today.

use std::path::Path;

#[test]
fn committed_header_matches_the_code() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        // cbindgen follows the `mod` declarations of lib.rs into the other files.
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("include/ipcez.h");
    if std::env::var_os("IPCEZ_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/ipcez.h is stale; regenerate it with \
         `IPCEZ_BLESS=1 cargo test -p ipcez-ffi --test header` and commit it"
    );
}
