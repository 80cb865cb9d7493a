use super::*;

#[test]
fn documented_codes() {
    use ErrorKind::*;
    let give_up = [
        (400, BadRequest),
        (401, Unauthorized),
        (402, NoCredits),
        (404, NotFound),
        (422, Rejected),
        (451, SourceBlocked),
        (501, GenerationFailed),
        (505, Disabled),
        (531, GenerationFailed),
        (418, Other),
    ];
    for (code, kind) in give_up {
        assert_eq!(kind_for_code(code, ""), Some(kind), "{code}");
        assert!(!kind.is_retryable(), "{code}");
    }
    for (code, kind) in [
        (429, RateLimited),
        (455, Maintenance),
        (500, ServerError),
        (550, ServerError),
        (502, ServerError),
        (408, ServerError),
    ] {
        assert_eq!(kind_for_code(code, ""), Some(kind), "{code}");
        assert!(kind.is_retryable(), "{code}");
    }
    assert_eq!(kind_for_code(200, ""), None);
}

#[test]
fn the_422_meanings() {
    assert_eq!(
        kind_for_code(422, "Temporarily supports records within 14 days"),
        Some(ErrorKind::Rejected)
    );
    assert_eq!(kind_for_code(422, "record is null"), Some(ErrorKind::Rejected));
    assert_eq!(
        kind_for_code(422, "record status is not success"),
        Some(ErrorKind::NotReady)
    );
}

#[test]
fn backoff_doubles_and_caps() {
    let b = Backoff {
        base: Duration::from_secs(2),
        max: Duration::from_secs(30),
    };
    let got: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
    assert_eq!(got, [2, 4, 8, 16, 30, 30]);
    assert_eq!(b.delay(1000), Duration::from_secs(30));
    let p = BackoffPolicy::default();
    assert_eq!(p.delay(ErrorKind::NotFound, 1), None);
    assert_eq!(p.delay(ErrorKind::Maintenance, 1), Some(Duration::from_secs(60)));
}

#[test]
fn display_names_the_call_and_the_decision() {
    let e = ProviderError {
        kind: ErrorKind::RateLimited,
        action: Action::RetryLater {
            after: Duration::from_secs(4),
        },
        code: Some(429),
        http_status: Some(429),
        call: "GET /api/v1/veo/record-info".into(),
        message: "slow down".into(),
    };
    assert_eq!(
        e.to_string(),
        "GET /api/v1/veo/record-info: rate_limited (code 429, HTTP 429): slow down; retry in 4s"
    );
    assert_eq!(clip(&"é".repeat(400)).chars().count(), 151);
    // A jittered wait reads in whole seconds, not down to the nanosecond.
    let e = ProviderError {
        action: Action::RetryLater {
            after: Duration::from_nanos(57_438_202_431),
        },
        ..e
    };
    assert!(e.to_string().ends_with("; retry in 57s"), "{e}");
    let e = ProviderError {
        action: Action::RetryLater {
            after: Duration::from_nanos(250_500_001),
        },
        ..e
    };
    assert!(e.to_string().ends_with("; retry in 250ms"), "{e}");
}

#[test]
fn answers_are_judged_by_the_body_code() {
    let data = read_answer(200, None, br#"{"code":200,"msg":"success","data":{"taskId":"t"}}"#).unwrap();
    assert_eq!(data["taskId"], "t");
    // The body code counts, whatever the HTTP status.
    let f = read_answer(200, None, br#"{"code":401,"msg":"You do not have access permissions"}"#).unwrap_err();
    assert_eq!(
        (f.kind, f.code, f.http_status),
        (ErrorKind::Unauthorized, Some(401), Some(200))
    );
    let f = read_answer(500, None, br#"{"code":422,"message":"record is null"}"#).unwrap_err();
    assert_eq!((f.kind, f.message.as_str()), (ErrorKind::Rejected, "record is null"));
    // ...except the documented HTTP-level 429.
    let hint = Some(Duration::from_secs(3));
    let f = read_answer(429, hint, br#"{"code":200}"#).unwrap_err();
    assert_eq!((f.kind, f.hint), (ErrorKind::RateLimited, hint));
}

#[test]
fn answers_that_are_not_the_envelope() {
    let f = read_answer(502, None, b"<html>Bad Gateway</html>").unwrap_err();
    assert_eq!((f.kind, f.code), (ErrorKind::ServerError, None));
    assert!(f.message.contains("Bad Gateway"));
    assert_eq!(read_answer(200, None, b"OK").unwrap_err().kind, ErrorKind::BadAnswer);
    assert_eq!(read_answer(404, None, b"").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        read_answer(200, None, br#"{"msg":"no code"}"#).unwrap_err().kind,
        ErrorKind::BadAnswer
    );
}
