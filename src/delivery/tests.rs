use super::*;

#[test]
fn classify_status_codes() {
    let now = SystemTime::now();
    assert_eq!(classify(StatusCode::OK, None, now), Verdict::Delivered);
    assert_eq!(classify(StatusCode::NO_CONTENT, None, now), Verdict::Delivered);
    assert_eq!(classify(StatusCode::GONE, None, now), Verdict::Gone);
    assert_eq!(
        classify(StatusCode::FOUND, None, now),
        Verdict::Retry { after: None },
        "redirects are failures"
    );
    assert_eq!(
        classify(StatusCode::INTERNAL_SERVER_ERROR, None, now),
        Verdict::Retry { after: None }
    );
    let ra = HeaderValue::from_static("7");
    assert_eq!(
        classify(StatusCode::TOO_MANY_REQUESTS, Some(&ra), now),
        Verdict::Retry {
            after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(
        classify(StatusCode::SERVICE_UNAVAILABLE, Some(&ra), now),
        Verdict::Retry {
            after: Some(Duration::from_secs(7))
        }
    );
    // Retry-After only counts on 429/503.
    assert_eq!(
        classify(StatusCode::INTERNAL_SERVER_ERROR, Some(&ra), now),
        Verdict::Retry { after: None }
    );
}

#[test]
fn retry_after_http_date() {
    let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:40:37 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
}

#[test]
fn retry_delay_jitter_stays_within_twenty_percent() {
    let schedule = vec![Duration::from_secs(10), Duration::from_secs(100)];
    for _ in 0..1000 {
        let d = retry_delay(&schedule, 1).unwrap();
        assert!(d >= Duration::from_secs(80) && d <= Duration::from_secs(120), "{d:?}");
    }
    assert_eq!(retry_delay(&schedule, 2), None, "schedule exhausted");
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_spaces_requests() {
    // governor runs on its own clock; check the quota arithmetic it is given.
    let sub = crate::config::Config::parse(
        std::path::Path::new("t.toml"),
        "[server]\nlisten=[\"127.0.0.1:0\"]\n[[routes]]\nname=\"r\"\npath=\"/r\"\n[[routes.subscribers]]\nname=\"s\"\nurl=\"http://127.0.0.1:1/\"\nrate=\"1000/s\"\n",
    )
    .unwrap()
    .routes[0]
        .subscribers[0]
        .clone();
    let limiter = build_limiter(&sub).unwrap();
    assert!(limiter.check().is_ok());
    assert!(limiter.check().is_err(), "burst of one");
}

#[test]
fn retry_after_only_lengthens_the_schedule() {
    let s = Duration::from_secs;
    assert_eq!(next_delay(s(5), None, s(3600)), s(5));
    assert_eq!(next_delay(s(5), Some(s(0)), s(3600)), s(5));
    assert_eq!(next_delay(s(5), Some(s(60)), s(3600)), s(60));
    assert_eq!(next_delay(s(5), Some(s(86400)), s(3600)), s(3600));
    assert_eq!(next_delay(s(7200), Some(s(86400)), s(3600)), s(7200));
}
