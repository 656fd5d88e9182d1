//! Compiles the game's messages with goverse's build helper (no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    goverse_codegen::build::compile_protos(&["proto/tictactoe.proto"], &["proto"])?;
    Ok(())
}
