use super::*;

#[test]
fn endpoint_paths() {
    assert!(check_endpoint_path("/api/v1/runway/generate").is_ok());
    assert!(check_endpoint_path("/api/v1/jobs/createTask").is_ok());
    for bad in [
        "/api/../admin",
        "api/v1/x",
        "/api//x",
        "/api/v1/x?y=1",
        "/other",
        "/api/v1/@evil.com",
    ] {
        assert!(check_endpoint_path(bad).is_err(), "{bad}");
    }
}

/// An error page quoting the callback URL (with its route token) or
/// the key, encoded, shows neither.
#[test]
fn an_error_hides_quoted_route_tokens_and_the_encoded_key() {
    let key = ApiKey::new("sk-very/secret+1").unwrap();
    let client = ProviderClient::new(ClientConfig::new(DEFAULT_BASE_URL, key)).unwrap();
    let page = "<html>502 url: /hooks/r%3Ftoken%3DRTOKENsekrit123 key sk-very%2Fsecret%2B1 \
                or sk-very/secret+1, callBackUrl=https://relay.example/hooks/r?token=RTOKENsekrit123&x=1</html>";
    let err = client.failed("recordInfo", Fault::new(ErrorKind::ServerError, page));
    let shown = err.to_string();
    assert!(!shown.contains("RTOKENsekrit"), "{shown}");
    assert!(!shown.contains("sk-very"), "{shown}");
    assert!(shown.contains("502 url: /hooks/r%3Ftoken%3D<redacted>"), "{shown}");
    // A page cut at its first 200 bytes inside the encoded key: its
    // start goes too (it was kept: observability review, stop 62).
    let page = format!("{:<190}sk-very%2Fsecret%2B1 and more", "<html>502");
    let cut = String::from_utf8_lossy(&page.as_bytes()[..200]).into_owned();
    assert!(cut.ends_with("sk-very%2F"), "{cut}");
    let shown = client
        .failed("recordInfo", Fault::new(ErrorKind::ServerError, &cut))
        .to_string();
    assert!(!shown.contains("sk-very"), "{shown}");
    assert!(shown.contains("  <redacted>;"), "{shown}");
}

/// "Record status is not success" (422) about some tasks neither slows
/// their polls nor another call's back-off: before, each counted in
/// the key's run of failures, their waits doubling to 5 min, and a
/// server error after them waited as long (provider review, stop 71).
#[test]
fn a_record_not_ready_is_no_failure_of_the_key() {
    let key = ApiKey::new("sk-test").unwrap();
    let client = ProviderClient::new(ClientConfig::new(DEFAULT_BASE_URL, key)).unwrap();
    let after = |e: ProviderError| match e.action {
        Action::RetryLater { after } => after,
        Action::GiveUp => panic!("given up: {e}"),
    };
    for _ in 0..6 {
        let e = client.failed(
            "GET /api/v1/veo/record-info",
            Fault::new(ErrorKind::NotReady, "not success"),
        );
        assert_eq!(after(e), Duration::from_secs(5));
    }
    let e = client.failed("GET /api/v1/veo/record-info", Fault::new(ErrorKind::ServerError, "502"));
    assert_eq!(after(e), Duration::from_secs(5), "the first failure of the key's run");
}

#[test]
fn config_debug_hides_the_key() {
    let cfg = ClientConfig::new(DEFAULT_BASE_URL, ApiKey::new("sk-very-secret").unwrap());
    assert!(!format!("{cfg:?}").contains("sk-very-secret"));
}
