//! Compiles proto/factum/v1/eventstore.proto with protox (no system protoc)
//! into the message types, client and server of `factum_remote::proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/factum/v1/eventstore.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
