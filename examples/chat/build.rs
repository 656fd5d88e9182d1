//! Compiles the chat's messages with goverse's build helper (no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    goverse_codegen::build::compile_protos(&["proto/chat.proto"], &["proto"])?;
    Ok(())
}
