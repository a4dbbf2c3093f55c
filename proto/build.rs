//! Compiles `admin.proto` with protox (pure Rust: no protoc needed) and tonic.

fn main() {
    println!("cargo:rerun-if-changed=admin.proto");
    let fds = match protox::compile(["admin.proto"], ["."]) {
        Ok(fds) => fds,
        Err(e) => panic!("admin.proto: {e}"),
    };
    if let Err(e) = tonic_prost_build::configure().compile_fds(fds) {
        panic!("generating the admin API: {e}");
    }
}
