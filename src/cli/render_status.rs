//! `hookrelay status`: the daemon (version, uptime, listeners, store,
//! readiness, last reload), then each certificate and its ACME state.

use serde_json::Value;

use super::render::s;

/// Seconds as their two largest units: `29d 23h`, `5h 3m`, `42s`.
fn secs(v: &Value) -> String {
    let Some(mut n) = v.as_u64() else {
        return "-".into();
    };
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if n >= size || (size == 1 && parts.is_empty()) {
            parts.push(format!("{}{unit}", n / size));
            n %= size;
        } else if !parts.is_empty() {
            // Keep the units adjacent: `2d 0h`, not `2d 5m`.
            parts.push(format!("0{unit}"));
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

/// `hookrelay status`: the daemon, then each certificate.
pub fn render_status(v: &Value) -> String {
    let listeners: Vec<String> = v["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| format!("{} (tls: {})", s(&l["addr"]), s(&l["tls"])))
        .collect();
    // An older daemon says nothing about its routes: `-`, as for any missing value.
    let routes: Vec<String> = v["routes"].as_array().into_iter().flatten().map(s).collect();
    let routes = if routes.is_empty() {
        s(&Value::Null)
    } else {
        routes.join(", ")
    };
    // Cluster mode: what JetStream holds for the cluster, not a disk.
    let size = match (v["store"]["messages"].as_u64(), v["store"].get("messages")) {
        (Some(n), _) => format!(
            "cluster: {n} messages, {:.2} MiB in JetStream",
            v["store"]["size_bytes"].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0)
        ),
        (None, Some(_)) => "cluster: size unknown, NATS cannot be read now".to_string(),
        (None, None) => format!("{} bytes", s(&v["store"]["size_bytes"])),
    };
    let mut out = format!(
        "hookrelay {}, up {} (since {}), {}\nstore:      {} at {} ({size})\nlisteners:  {}\nroutes:     {}\n",
        s(&v["version"]),
        secs(&v["uptime_seconds"]),
        s(&v["started_at"]),
        match (&v["ready"], v["not_ready_because"].as_str()) {
            (Value::Bool(true), _) => "ready".to_string(),
            (_, Some(why)) => format!("NOT READY: {why}"),
            _ => "NOT READY".to_string(),
        },
        s(&v["store"]["backend"]),
        s(&v["store"]["path"]),
        listeners.join(", "),
        routes,
    );
    // Only a refused one is worth a line: the running config is not the file's.
    if let Some(why) = v["last_reload"]["refused_because"].as_str() {
        out.push_str(&format!(
            "last reload: REFUSED at {} (the running configuration stayed): {why}\n",
            s(&v["last_reload"]["at"])
        ));
    }
    let certs = v["certificates"].as_array().cloned().unwrap_or_default();
    if certs.is_empty() {
        out.push_str("certificates: none (plain HTTP)\n");
    }
    for c in &certs {
        let cert = &c["certificate"];
        let names = cert["names"]
            .as_array()
            .map(|n| crate::tls::CertInfo::names_shown(&n.iter().map(s).collect::<Vec<_>>()));
        match names {
            Some(names) => {
                out.push_str(&format!("\ncertificate ({}): {names}\n", s(&c["source"])));
                let left = if cert["expired"].as_bool() == Some(true) {
                    format!(
                        "EXPIRED {} ago: TLS handshakes fail",
                        secs(&cert["expired_seconds_ago"])
                    )
                } else if cert["not_yet_valid"].as_bool() == Some(true) {
                    format!(
                        "NOT VALID YET, for {}: TLS handshakes fail",
                        secs(&cert["valid_in_seconds"])
                    )
                } else {
                    format!("expires in {}", secs(&cert["expires_in_seconds"]))
                };
                out.push_str(&format!(
                    "  valid:     {} to {} ({left})\n  serial:    {}\n",
                    s(&cert["not_before"]),
                    s(&cert["not_after"]),
                    s(&cert["serial"]),
                ));
            }
            None => out.push_str(&format!("\ncertificate ({}): not issued yet\n", s(&c["source"]))),
        }
        if !c["cert_file"].is_null() {
            out.push_str(&format!("  file:      {}\n", s(&c["cert_file"])));
        }
        let a = &c["acme"];
        if a.is_object() {
            let domains: Vec<String> = a["domains"].as_array().into_iter().flatten().map(s).collect();
            out.push_str(&format!(
                "  domains:   {}\n  ca:        {}\n  renews:    {}\n",
                domains.join(", "),
                s(&a["directory"]),
                s(&a["renew_at"]),
            ));
            if let Some(why) = a["stand_in"].as_str() {
                out.push_str(&format!(
                    "  STAND-IN:  not fully valid: it {why}; some clients refuse it until the order for the \
                     domains succeeds\n"
                ));
            }
            let in_a_row = a["consecutive_failures"].as_u64().unwrap_or(0);
            out.push_str(&format!("  failures:  {} since start", s(&a["failures"])));
            if in_a_row > 0 {
                out.push_str(&format!(
                    ", {in_a_row} in a row; next attempt {}\n  last error ({}): {}\n",
                    s(&a["next_attempt"]),
                    s(&a["last_failure"]),
                    s(&a["last_error"]),
                ));
            } else if !a["next_attempt"].is_null() {
                // Waiting with no failure: the daily cap holds the order back.
                out.push_str(&format!(
                    "; next order {} (as many certificates issued in the last 24 hours as allowed)\n",
                    s(&a["next_attempt"])
                ));
            } else {
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "render_status_tests.rs"]
mod tests;
