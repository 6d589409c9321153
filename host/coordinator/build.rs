//! The dashboard (`web/`, built by `scripts/build.sh` into `web/dist`) is
//! embedded in the binary: build again when it changes, files added and
//! removed included.
fn main() {
    println!("cargo:rerun-if-changed=../../web/dist");
}
