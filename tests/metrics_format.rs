//! Promise 9, metrics a scraper can read: `/metrics` of a relay that took,
//! delivered, retried and refused callbacks is strict OpenMetrics text — each
//! family's `# HELP` and `# TYPE` once, before its samples, which are not
//! interleaved with another family's; HELP text and label values escaped
//! (`\\`, `\n`, `\"` only); no sample twice; histogram buckets cumulative,
//! ending at `+Inf` equal to `_count`, with `_sum`; `# EOF` last.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;

/// An OpenMetrics `escaped-string` (HELP text, a label value): no raw `"`
/// or newline, and a backslash only before `\`, `n` or `"`.
fn check_escaped(what: &str, s: &str) {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => panic!("{what}: unescaped {c:?} in {s:?}"),
            '\\' => match chars.next() {
                Some('\\' | 'n' | '"') => {}
                other => panic!("{what}: backslash before {other:?} in {s:?}"),
            },
            _ => {}
        }
    }
}

/// `{a="x",b="y"}` (or nothing) into its labels, each value checked.
fn labels(line: &str, text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels in {line:?}"));
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {name:?} in {line:?}"
        );
        // The value ends at the first quote no backslash escapes.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
        check_escaped(line, &after[..end]);
        assert!(
            out.insert(name.to_string(), after[..end].to_string()).is_none(),
            "label {name} twice in {line:?}"
        );
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    out
}

/// The suffixes a sample of a family of `kind` may add to its name.
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gauge" => &[""],
        other => panic!("unexpected metric type {other}"),
    }
}

/// Panics, naming the line, where `text` is not strict OpenMetrics.
fn check_openmetrics(text: &str) {
    assert!(text.ends_with("# EOF\n"), "no `# EOF` at the end");
    let body = &text[..text.len() - "# EOF\n".len()];
    let mut seen_families = BTreeSet::new();
    let mut family: Option<(String, String)> = None; // name, type
    let mut help_of: Option<String> = None;
    let mut samples = BTreeSet::new();
    // Per histogram series (labels without `le`): (le, count) in order, _count, _sum.
    type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
    let mut histograms: BTreeMap<String, Series> = BTreeMap::new();
    for line in body.lines() {
        assert!(!line.is_empty(), "blank line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(seen_families.insert(name.to_string()), "family {name} described twice");
            check_escaped(line, help);
            help_of = Some(name.to_string());
            family = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            assert_eq!(help_of.as_deref(), Some(name), "TYPE without its HELP first: {line:?}");
            family = Some((name.to_string(), kind.to_string()));
            help_of = None;
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let (name, kind) = family
                .clone()
                .unwrap_or_else(|| panic!("sample outside its family: {line:?}"));
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (sample_name, label_text) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"))),
                None => (series, ""),
            };
            let suffix = sample_name
                .strip_prefix(name.as_str())
                .unwrap_or_else(|| panic!("sample {sample_name} interleaved into family {name}"));
            assert!(suffixes(&kind).contains(&suffix), "{sample_name} in a {kind} family");
            let mut l = labels(line, label_text);
            let le = l.remove("le");
            assert!(
                samples.insert(format!("{sample_name}{l:?}{le:?}")),
                "sample twice: {line:?}"
            );
            if kind == "histogram" {
                let h = histograms.entry(format!("{name}{l:?}")).or_default();
                match suffix {
                    "_bucket" => {
                        let le = le.unwrap_or_else(|| panic!("bucket without le: {line:?}"));
                        let le = if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().unwrap()
                        };
                        h.0.push((le, value));
                    }
                    "_count" => h.1 = Some(value),
                    "_sum" => h.2 = Some(value),
                    _ => {}
                }
            }
        }
    }
    assert!(help_of.is_none(), "a HELP without TYPE at the end");
    assert!(!histograms.is_empty(), "no histogram series to check");
    for (series, (buckets, count, sum)) in histograms {
        assert!(sum.is_some(), "{series}: no _sum");
        let count = count.unwrap_or_else(|| panic!("{series}: no _count"));
        for w in buckets.windows(2) {
            assert!(w[0].0 < w[1].0, "{series}: le not increasing: {buckets:?}");
            assert!(w[0].1 <= w[1].1, "{series}: buckets not cumulative: {buckets:?}");
        }
        let last = buckets.last().unwrap_or_else(|| panic!("{series}: no buckets"));
        assert_eq!(last.0, f64::INFINITY, "{series}: no +Inf bucket");
        assert_eq!(last.1, count, "{series}: +Inf bucket is not _count");
    }
}

#[test]
fn the_checker_refuses_what_is_not_openmetrics() {
    let ok = "# HELP x_seconds A \\\"quoted\\\" help.\n# TYPE x_seconds histogram\n\
              x_seconds_sum{s=\"a\"} 1.5\nx_seconds_count{s=\"a\"} 2\n\
              x_seconds_bucket{le=\"1\",s=\"a\"} 1\nx_seconds_bucket{le=\"+Inf\",s=\"a\"} 2\n# EOF\n";
    check_openmetrics(ok);
    for bad in [
        ok.replace("\\\"quoted\\\"", "\"quoted\""),
        ok.replace("le=\"1\",s=\"a\"} 1", "le=\"1\",s=\"a\"} 3"),
        ok.replace("x_seconds_count{s=\"a\"} 2", "x_seconds_count{s=\"a\"} 5"),
        ok.replace("# EOF\n", ""),
        ok.replace("s=\"a\"} 1.5", "s=\"a\nb\"} 1.5"),
        ok.replace(
            "# TYPE x_seconds histogram\n",
            "# TYPE x_seconds histogram\n# HELP x_seconds again\n",
        ),
    ] {
        assert!(
            std::panic::catch_unwind(|| check_openmetrics(&bad)).is_err(),
            "accepted:\n{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_strict_openmetrics() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Sub::ok().await;
    let failing = Sub::always(Behaviour::Status(500)).await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("ok", ok.url()))
        .subscriber(Subscriber::new("failing.one", failing.url()).retry([ms(20)]));
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    for i in 0..3 {
        callback(addr, &runway(&format!("m{i}"))).await;
    }
    callback(addr, &runway("m0")).await;
    post(addr, "/hooks/t?token=bad", &[], runway("x")).await;
    post(addr, "/hooks/none", &[], runway("x")).await;
    ok.wait_for(secs(10), "3 deliveries", |r| r.len() >= 3).await;
    failing
        .wait_for(secs(10), "3 tries and retries", |r| r.len() >= 6)
        .await;
    let dead = "hookrelay_deliveries_total{subscriber=\"failing.one\",outcome=\"dead\"}";
    metrics_until(h.admin_addr, secs(10), "3 dead letters", |m| {
        m.iter().any(|(k, v)| k == dead && *v >= 3.0)
    })
    .await;
    let (_, text) = admin(h.admin_addr, "GET", "/metrics").await;
    check_openmetrics(text.as_str().expect("metrics text"));
    h.shutdown().await;
}
