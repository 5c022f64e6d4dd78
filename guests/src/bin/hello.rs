//! `hello`: the smallest guest; prints `hello from wpod` and exits 0.

fn main() {
    println!("hello from wpod");
}
