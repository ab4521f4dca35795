//! build.rs — kernel compilation arrives with the CUDA backend (issue: CUDA backend).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
