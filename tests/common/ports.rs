//! Fixed ports for tests that must know a port before anything listens on it
//! (a CA validating on the relay's port, a relay restarted on the same port).
//! Everything else listens on port 0 and reads the address back.

/// A port free for TCP and UDP, chosen below the kernel's ephemeral range so
/// that no outgoing connection (nor a bind to port 0) takes it between now and
/// the moment the test binds it, and never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_001));
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = fastrand::u16(from..to);
        if given.contains(&port) {
            continue;
        }
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// A loopback address on a [`free_port`]: for a relay restarted on the same
/// address, or one whose address its peers must know first.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))
}
