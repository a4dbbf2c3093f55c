//! Compiles `proto/admin.proto` with protox (pure Rust: no protoc needed) and tonic.

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/admin.proto"], ["proto"]).expect("proto/admin.proto");
    tonic_prost_build::configure()
        .compile_fds(fds)
        .expect("generating the admin API");
}
