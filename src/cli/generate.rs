//! `gen-secret` and `gen-token`: fresh credentials from the operating
//! system's CSPRNG (also what `init` writes).

/// A Standard Webhooks secret: 32 bytes from the operating system's CSPRNG.
pub fn gen_secret() -> String {
    use base64::Engine;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes())
    )
}

/// A route or admin token: 32 bytes from the operating system's CSPRNG, in
/// hex so it needs no escaping in a `?token=` query or a header.
pub fn gen_token() -> String {
    hex::encode(random_bytes())
}

fn random_bytes() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source works");
    bytes
}
