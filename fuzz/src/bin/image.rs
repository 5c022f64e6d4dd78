//! Fuzz target: telling a component from a core module and from everything
//! else by a file's first bytes (`image/detect.rs`). Property: no panic, and
//! a file that is called Wasm starts with `\0asm`.

#[path = "../../../runtime/src/image/detect.rs"]
#[allow(dead_code)]
mod detect;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if detect::detect(data).is_ok() {
            assert!(data.starts_with(b"\0asm"));
        }
    });
}
