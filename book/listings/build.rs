//! Compiles the book's messages with goverse's build helper, as the book's
//! "Messages of your own" shows.

// ANCHOR: build
// build.rs
fn main() -> Result<(), Box<dyn std::error::Error>> {
    goverse_codegen::build::compile_protos(
        &["proto/chat.proto", "proto/payments.proto"],
        &["proto"],
    )?;
    Ok(())
}
// ANCHOR_END: build
