//! Verification by fetch: does a received callback agree with the provider's
//! own record of the task?
//!
//! The `kie` signature covers only `taskId.timestamp`, so a captured signature
//! can carry any body. The provider's record is the authority: the task id,
//! the outcome, the result URLs and the failure code of a callback must agree
//! with it. Does not fetch the record (the caller does, through
//! [`super::client`]) and does not decide what happens to a disagreeing event.

use std::collections::HashSet;

use serde_json::Value;

use super::loose::{first_present, int_of, str_at, strings_of, unstring, UniqueUrls};
use super::product::{CallbackStage, Product, Stage};
use super::record::{four_o_urls, veo_list, Record, SUNO_URL_FIELDS};

/// The result of comparing a callback with the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing in the callback contradicts the record.
    Agree,
    /// The callback says something the record does not: hold it as unverified.
    Disagree(String),
    /// The callback reports an end the record has not reached yet: ask again later.
    NotTerminalYet,
}

/// What a callback body claims, read the same way for every product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackFacts {
    pub task_id: Option<String>,
    pub stage: CallbackStage,
    /// Every result URL the callback names (order kept, no repeats).
    pub media_urls: Vec<String>,
    /// The failure code it reports where the record has the same one:
    /// Market's `data.failCode` (its callback is the record's `data`). The
    /// other products' callback `code` is another enum than their record's
    /// `errorCode`/`failCode` (Suno's callback `531` for a record's `400`,
    /// Veo's `422`, Runway's `500`): not compared.
    pub failure_code: Option<i64>,
    /// Whether the body has a place for result URLs at all. Only Market's
    /// documented short callback, `{code, msg, data: {taskId}}`, has none:
    /// without `data.resultJson` it claims the outcome and nothing more (a
    /// URL anywhere else in a Market callback must be in the record, see
    /// [`verify`]).
    pub names_results: bool,
    /// Whether this stage is the one that reveals results (Suno's `first`:
    /// the first track): naming none of them is no such callback.
    pub reveals_results: bool,
}

impl CallbackFacts {
    pub fn read(product: Product, body: &Value) -> CallbackFacts {
        let stage = product.callback_stage(body);
        let failure_code = match (stage, product) {
            (CallbackStage::Failed, Product::Market) => first_present(body, &["/data/failCode"]).and_then(int_of),
            _ => None,
        };
        CallbackFacts {
            task_id: product.callback_task_id(body).map(str::to_string),
            stage,
            media_urls: callback_urls(product, body),
            failure_code,
            names_results: product != Product::Market || body.pointer("/data/resultJson").is_some(),
            reveals_results: product == Product::Suno && str_at(body, "/data/callbackType") == Some("first"),
        }
    }
}

/// Compare a received callback body with the provider's record of its task.
pub fn verify(received: &Value, record: &Record) -> Verdict {
    let facts = CallbackFacts::read(record.product(), received);
    match facts.task_id.as_deref() {
        Some(id) if id == record.task_id() => {}
        Some(id) => {
            return Verdict::Disagree(format!(
                "callback names task {id:?}, the record is {:?}",
                record.task_id()
            ))
        }
        None => return Verdict::Disagree("callback names no task id".into()),
    }
    // A Market callback is the record's `data` (or the short form, which
    // names no URL): a URL it names anywhere, in whatever field, must be one
    // the record has somewhere, once the record has reached its end.
    if let Some(u) = unvouched_url(received, record).filter(|_| facts.stage != CallbackStage::Unrecognised) {
        if !record.stage().is_terminal() {
            return Verdict::NotTerminalYet;
        }
        return Verdict::Disagree(format!(
            "callback names {}, which the provider's record does not",
            named(&u)
        ));
    }
    let known: HashSet<String> = record.media_urls().into_iter().collect();
    let unknown_url = facts
        .media_urls
        .iter()
        .find(|u| !known.contains(*u))
        .cloned()
        .or_else(|| unvouched_4k(received, record));
    match facts.stage {
        CallbackStage::Unrecognised => Verdict::Disagree("callback has no status this product uses".into()),
        // A stage before the end: its URLs must be ones the record knows, once
        // the record has them (it may lag behind the callback while running).
        // A stage that reveals results but names none agrees with no record:
        // it waits for the record to have results, then disagrees (a forged
        // `first` naming no track would otherwise agree with any record).
        CallbackStage::Progress => match unknown_url {
            None if facts.reveals_results && facts.media_urls.is_empty() => {
                if known.is_empty() && !record.stage().is_terminal() {
                    Verdict::NotTerminalYet
                } else {
                    Verdict::Disagree("callback names none of the record's result URLs".into())
                }
            }
            None => Verdict::Agree,
            Some(_) if !record.stage().is_terminal() => Verdict::NotTerminalYet,
            Some(u) => Verdict::Disagree(format!(
                "callback names {}, which the provider's record does not",
                named(&u)
            )),
        },
        CallbackStage::Succeeded | CallbackStage::Failed if !record.stage().is_terminal() => Verdict::NotTerminalYet,
        CallbackStage::Succeeded => {
            if record.stage() != Stage::Succeeded {
                return Verdict::Disagree(format!(
                    "callback reports success, the provider's record says {}",
                    record.state()
                ));
            }
            if let Some(u) = unknown_url {
                return Verdict::Disagree(format!(
                    "callback names {}, which the provider's record does not",
                    named(&u)
                ));
            }
            // A callback that can name results but names none of them is a
            // body with its URLs stripped; the short form names none to strip.
            if facts.media_urls.is_empty() && !known.is_empty() && facts.names_results {
                return Verdict::Disagree("callback names none of the record's result URLs".into());
            }
            Verdict::Agree
        }
        CallbackStage::Failed => {
            if record.stage() != Stage::Failed {
                return Verdict::Disagree(format!(
                    "callback reports failure, the provider's record says {}",
                    record.state()
                ));
            }
            let record_code = record
                .failure()
                .and_then(|f| f.code)
                .filter(|c| (400..=599).contains(c));
            match (facts.failure_code, record_code) {
                (Some(got), Some(want)) if got != want => Verdict::Disagree(format!(
                    "callback failure code {got}, the provider's record says {want}"
                )),
                _ => Verdict::Agree,
            }
        }
    }
}

/// [`verify`], and then the URLs the relay would archive for the callback
/// (its route's media pointers, which may reach fields the product's
/// documented ones do not) must each be one of the record's results: a
/// forged body cannot have a URL downloaded by hiding it where the comparison
/// does not look (hostile review, stop 65), nor have the task's inputs (a
/// prompt's image, the callback URL) archived as results (change review).
/// Compared without surrounding whitespace, as the archive takes URLs.
pub fn verify_archiving(received: &Value, record: &Record, archived: &[String]) -> Verdict {
    let verdict = verify(received, record);
    if verdict != Verdict::Agree || archived.is_empty() {
        return verdict;
    }
    let mut vouched = record.media_urls();
    // A Market model's result may hold files under other names than
    // `resultUrls` (its own shape is not dropped): any string of it.
    if let Some(result) = (record.product() == Product::Market)
        .then(|| record.data().get("resultJson"))
        .flatten()
    {
        strings_in(result, NESTED_JSON_DEPTH, &mut vouched);
    }
    let vouched: HashSet<&str> = vouched.iter().map(|u| u.trim()).collect();
    match archived.iter().find(|u| !vouched.contains(u.trim())) {
        None => Verdict::Agree,
        Some(_) if !record.stage().is_terminal() => Verdict::NotTerminalYet,
        Some(u) => Verdict::Disagree(format!(
            "callback names {} for the media archive, which the provider's record does not",
            named(u)
        )),
    }
}

/// Veo's 4K upgrade calls back under the generation's task id with
/// `imageUrls`, a success of its own (not a duplicate of the generation's
/// callback): such URLs must be the record's `imageUrls`, not merely some
/// URL of the record, or a captured genuine callback could be posted again
/// as a 4K result naming the generation's own video.
fn unvouched_4k(received: &Value, record: &Record) -> Option<String> {
    if record.product() != Product::Veo {
        return None;
    }
    let data = received.get("data").unwrap_or(&Value::Null);
    let upgraded: HashSet<String> = veo_list(record.data(), "imageUrls").into_iter().collect();
    veo_list(data, "imageUrls").into_iter().find(|u| !upgraded.contains(u))
}

/// How deep strings holding JSON (`resultJson`, `param`) are read inside
/// one another.
const NESTED_JSON_DEPTH: u8 = 4;

/// A URL a callback names, as the reason shows it (logged, and the dead
/// letter's error): without its query (a signed URL's signature), quoted
/// with its control characters escaped (a forged body's line break).
fn named(url: &str) -> String {
    format!("{:?}", crate::media::shown(url))
}

/// For a Market callback: the first URL-looking string in the body (outside
/// the envelope's `msg`) that is no string of the record's `data`. Both are
/// read through strings that hold JSON, so `param` echoed as an object or as
/// a string compares alike. Other products' callbacks are not the record's
/// shape; their documented URL fields are compared instead.
fn unvouched_url(received: &Value, record: &Record) -> Option<String> {
    if record.product() != Product::Market {
        return None;
    }
    let mut claimed = Vec::new();
    match received {
        Value::Object(top) => top
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "msg" | "message"))
            .for_each(|(_, v)| strings_in(v, NESTED_JSON_DEPTH, &mut claimed)),
        other => strings_in(other, NESTED_JSON_DEPTH, &mut claimed),
    }
    let mut known = Vec::new();
    strings_in(record.data(), NESTED_JSON_DEPTH, &mut known);
    let known: HashSet<String> = known.into_iter().collect();
    claimed.into_iter().find(|s| looks_like_url(s) && !known.contains(s))
}

/// A scheme (`https://…`, `s3://…`) or a scheme-relative `//host/…`.
fn looks_like_url(s: &str) -> bool {
    s.contains("://") || s.trim_start().starts_with("//")
}

/// Every string in `v`, and in the JSON held by its strings, `depth` deep.
fn strings_in(v: &Value, depth: u8, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(inner) = unstring(v).filter(|_| depth > 0) {
                strings_in(&inner, depth - 1, out);
            }
            out.push(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|x| strings_in(x, depth, out)),
        Value::Object(map) => map.values().for_each(|x| strings_in(x, depth, out)),
        _ => {}
    }
}

/// Result URLs in a callback body, per product.
fn callback_urls(product: Product, body: &Value) -> Vec<String> {
    let mut out = UniqueUrls::default();
    let strs = |ptrs: &[&str]| {
        ptrs.iter()
            .filter_map(|p| str_at(body, p).map(str::to_string))
            .collect::<Vec<_>>()
    };
    let data = body.get("data").unwrap_or(&Value::Null);
    match product {
        Product::Runway => out.push_all(strs(&["/data/video_url", "/data/image_url"])),
        Product::Aleph => out.push_all(strs(&["/data/result_video_url", "/data/result_image_url"])),
        Product::FluxKontext => out.push_all(strs(&["/data/info/resultImageUrl", "/data/info/originImageUrl"])),
        Product::Veo => {
            for field in ["resultUrls", "originUrls", "imageUrls"] {
                out.push_all(veo_list(data, field));
            }
        }
        Product::FourOImage => out.push_all(four_o_urls(data)),
        Product::Suno => {
            for track in data.get("data").and_then(Value::as_array).into_iter().flatten() {
                for (_, snake) in SUNO_URL_FIELDS {
                    out.push_all(str_at(track, &format!("/{snake}")).map(str::to_string));
                }
            }
        }
        Product::Market => {
            if let Some(result) = data.get("resultJson").and_then(unstring) {
                for field in ["resultUrls", "resultWaterMarkUrls"] {
                    out.push_all(result.get(field).map(strings_of).unwrap_or_default());
                }
            }
        }
    }
    out.into_vec()
}

#[cfg(test)]
mod tests;
