//! Prints the dashboard's GLSL module generated from shaders/:
//! `cargo run -p effects --example webgl2 > frontend/src/app/effects/shaders.generated.ts`
fn main() {
    match effects::webgl2_module() {
        Ok(module) => print!("{module}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
