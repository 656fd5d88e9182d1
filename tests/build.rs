//! Compiles the test messages with goverse's build helper, the way a user's
//! crate does.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    goverse_codegen::build::compile_protos(&["proto/chat.proto"], &["proto"])?;
    Ok(())
}
