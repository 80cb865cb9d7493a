//! A polled status record (the envelope's `data`), parsed once: its task id,
//! classified stage, result URLs and failure details.
//!
//! Reads the documented field names and the UNCONFIRMED variants alike (URL
//! lists as arrays or JSON strings, under `response` or `info`). Does not fetch
//! (see [`super::client`]) nor build callbacks (see [`super::shape`]).

use serde_json::Value;

use super::loose::{first_present, first_str, int_at, int_of, str_at, strings_of, unstring, UniqueUrls};
use super::product::{Classified, Product, Stage};

/// One task's record as the provider returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    product: Product,
    /// The record's own task id, or the requested one when the record omits it.
    task_id: String,
    /// The envelope's `data`, untouched: the shape mapping copies fields from it.
    data: Value,
    classified: Classified,
}

/// Why a record could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the provider's record is not a JSON object")]
    NotAnObject,
    #[error("asked for task {requested:?} but the provider's record is for task {found:?}")]
    TaskMismatch { requested: String, found: String },
}

/// A failure's details as the record gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `failCode` / `errorCode` when it is a number (or a string holding one).
    pub code: Option<i64>,
    pub message: Option<String>,
}

impl Record {
    /// Parse `data` for the task `requested` (checked against the record's own id).
    pub fn from_data(product: Product, requested: &str, data: Value) -> Result<Record, RecordError> {
        if !data.is_object() {
            return Err(RecordError::NotAnObject);
        }
        let own = first_str(&data, product.record_task_id_pointers());
        if let Some(found) = own.filter(|f| *f != requested) {
            return Err(RecordError::TaskMismatch {
                requested: requested.into(),
                found: found.into(),
            });
        }
        let mut classified = product.classify(&data);
        // A success whose result is not in the record yet (it can lag behind
        // the callback) is not the end: a callback made from it would carry
        // no result, and the real one, later, would be its duplicate.
        if classified.stage == Stage::Succeeded && !has_result(product, &data) {
            classified = Classified {
                stage: Stage::Running,
                state: format!("{} (no result yet)", classified.state),
            };
        }
        Ok(Record {
            product,
            task_id: requested.into(),
            data,
            classified,
        })
    }

    pub fn product(&self) -> Product {
        self.product
    }

    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    pub fn data(&self) -> &Value {
        &self.data
    }

    pub fn stage(&self) -> Stage {
        self.classified.stage
    }

    /// The provider's own state value, for logs and the task view.
    pub fn state(&self) -> &str {
        &self.classified.state
    }

    /// Runway's `expireFlag` = 1: the media is past the 14-day retention.
    pub fn is_expired(&self) -> bool {
        int_at(&self.data, "/expireFlag") == Some(1)
    }

    /// Failure details, for a failed record only.
    pub fn failure(&self) -> Option<Failure> {
        if self.stage() != Stage::Failed {
            return None;
        }
        let (code_ptrs, msg_ptrs): (&[&str], &[&str]) = match self.product {
            Product::Runway | Product::Market => (&["/failCode"], &["/failMsg"]),
            _ => (&["/errorCode"], &["/errorMessage"]),
        };
        Some(Failure {
            code: first_present(&self.data, code_ptrs).and_then(int_of),
            message: first_str(&self.data, msg_ptrs).map(str::to_string),
        })
    }

    /// Every result URL the record names, in a stable order, without repeats.
    pub fn media_urls(&self) -> Vec<String> {
        let d = &self.data;
        let mut out = UniqueUrls::default();
        let strs = |ptrs: &[&str]| {
            ptrs.iter()
                .filter_map(|p| str_at(d, p).map(str::to_string))
                .collect::<Vec<_>>()
        };
        match self.product {
            Product::Runway => out.push_all(strs(&["/videoInfo/videoUrl", "/videoInfo/imageUrl"])),
            Product::Aleph => out.push_all(strs(&["/response/resultVideoUrl", "/response/resultImageUrl"])),
            Product::FluxKontext => out.push_all(strs(&["/response/resultImageUrl", "/response/originImageUrl"])),
            Product::Veo => {
                for field in ["resultUrls", "originUrls", "imageUrls"] {
                    out.push_all(veo_list(d, field));
                }
            }
            Product::FourOImage => out.push_all(four_o_urls(d)),
            Product::Suno => {
                for track in suno_tracks(d) {
                    for field in SUNO_URL_FIELDS {
                        out.push_all(str_at(track, &format!("/{}", field.0)).map(str::to_string));
                    }
                }
            }
            Product::Market => {
                if let Some(result) = d.get("resultJson").and_then(unstring) {
                    for field in ["resultUrls", "resultWaterMarkUrls"] {
                        out.push_all(result.get(field).map(strings_of).unwrap_or_default());
                    }
                }
            }
        }
        out.into_vec()
    }
}

/// Whether a success record holds the product's result: its main result
/// URL(s) (Runway's video, not only the cover), or for the market any
/// result (`resultObject` for text models).
fn has_result(product: Product, d: &Value) -> bool {
    match product {
        Product::Runway => str_at(d, "/videoInfo/videoUrl").is_some(),
        Product::Aleph => str_at(d, "/response/resultVideoUrl").is_some(),
        Product::FluxKontext => str_at(d, "/response/resultImageUrl").is_some(),
        Product::Veo => !veo_list(d, "resultUrls").is_empty(),
        Product::FourOImage => !four_o_urls(d).is_empty(),
        Product::Suno => super::product::suno_has_audio(d),
        // `resultUrls` with a URL, or any other result field (`resultObject`
        // for text models; a model's own shape is not dropped).
        Product::Market => d.get("resultJson").and_then(unstring).is_some_and(|r| {
            r.as_object().is_some_and(|o| {
                o.iter().any(|(k, v)| match k.as_str() {
                    "resultUrls" => !strings_of(v).is_empty(),
                    "resultWaterMarkUrls" => false,
                    _ => !v.is_null(),
                })
            })
        }),
    }
}

/// Suno track URL fields: poll name (camelCase) and callback name (snake_case).
pub(crate) const SUNO_URL_FIELDS: [(&str, &str); 6] = [
    ("audioUrl", "audio_url"),
    ("sourceAudioUrl", "source_audio_url"),
    ("streamAudioUrl", "stream_audio_url"),
    ("sourceStreamAudioUrl", "source_stream_audio_url"),
    ("imageUrl", "image_url"),
    ("sourceImageUrl", "source_image_url"),
];

/// Suno's `response.sunoData[]`.
pub(crate) fn suno_tracks(data: &Value) -> &[Value] {
    data.pointer("/response/sunoData")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A Veo list field: the reference puts it under `response` as an array; the
/// quickstart parses a JSON string, under `info` in callbacks and at the top
/// of `data` when polling. Every place is read (in that order, no repeats): a
/// callback checked against the record must not hide a URL in a second place
/// the relay archives from (hostile review, stop 65).
pub(crate) fn veo_list(data: &Value, field: &str) -> Vec<String> {
    every_place(
        data,
        &[
            &format!("/response/{field}"),
            &format!("/info/{field}"),
            &format!("/{field}"),
        ],
    )
}

/// 4o Image result URLs: `resultUrls` per the reference, `result_urls` per the
/// quickstart; under `response` (poll) or `info` (callback); every place read,
/// as [`veo_list`].
pub(crate) fn four_o_urls(data: &Value) -> Vec<String> {
    every_place(
        data,
        &[
            "/response/resultUrls",
            "/response/result_urls",
            "/info/result_urls",
            "/info/resultUrls",
        ],
    )
}

/// The strings of every pointer's list, in order, without repeats.
fn every_place(data: &Value, ptrs: &[&str]) -> Vec<String> {
    let mut out = UniqueUrls::default();
    for p in ptrs {
        out.push_all(data.pointer(p).map(strings_of).unwrap_or_default());
    }
    out.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_id_from_the_record_or_the_request() {
        let r = Record::from_data(
            Product::Runway,
            "t1",
            json!({"videoInfo": {"taskId": "t1"}, "state": "wait"}),
        )
        .unwrap();
        assert_eq!(r.task_id(), "t1");
        let r = Record::from_data(Product::Aleph, "t2", json!({"successFlag": 0})).unwrap();
        assert_eq!(r.task_id(), "t2");
        let err = Record::from_data(Product::Veo, "t3", json!({"taskId": "other"})).unwrap_err();
        assert_eq!(
            err,
            RecordError::TaskMismatch {
                requested: "t3".into(),
                found: "other".into()
            }
        );
        assert_eq!(
            Record::from_data(Product::Veo, "t", json!(null)).unwrap_err(),
            RecordError::NotAnObject
        );
    }

    #[test]
    fn runway_failure_code_may_be_an_empty_string() {
        let r = Record::from_data(
            Product::Runway,
            "t",
            json!({"state": "fail", "failCode": "", "failMsg": "nsfw"}),
        )
        .unwrap();
        let f = r.failure().unwrap();
        assert_eq!((f.code, f.message.as_deref()), (None, Some("nsfw")));
        let r = Record::from_data(Product::Market, "t", json!({"state": "fail", "failCode": "422"})).unwrap();
        assert_eq!(r.failure().unwrap().code, Some(422));
    }

    #[test]
    fn a_success_without_its_result_is_not_the_end_yet() {
        let runway = |info: Value| {
            Record::from_data(Product::Runway, "t", json!({"state": "success", "videoInfo": info})).unwrap()
        };
        for info in [
            Value::Null,
            json!({"videoUrl": "", "imageUrl": ""}),
            json!({"videoUrl": "", "imageUrl": "https://f/c.png"}),
        ] {
            let r = runway(info.clone());
            assert_eq!(r.stage(), Stage::Running, "{info}");
            assert_eq!(r.state(), "success (no result yet)");
        }
        let r = runway(json!({"videoUrl": "https://f/v.mp4", "imageUrl": ""}));
        assert_eq!((r.stage(), r.state()), (Stage::Succeeded, "success"));
        let market = |result: Value| {
            Record::from_data(Product::Market, "t", json!({"state": "success", "resultJson": result}))
                .unwrap()
                .stage()
        };
        assert_eq!(market(json!("")), Stage::Running);
        assert_eq!(market(json!("{\"resultUrls\":[]}")), Stage::Running);
        assert_eq!(market(json!("{\"resultObject\":{\"text\":\"hi\"}}")), Stage::Succeeded);
        assert_eq!(market(json!({"resultUrls": ["https://m/1.png"]})), Stage::Succeeded);
        let veo = Record::from_data(Product::Veo, "t", json!({"successFlag": 1, "response": null})).unwrap();
        assert_eq!(veo.stage(), Stage::Running);
        // A failure needs no result.
        let failed = Record::from_data(Product::Runway, "t", json!({"state": "fail", "videoInfo": null})).unwrap();
        assert_eq!(failed.stage(), Stage::Failed);
    }

    #[test]
    fn veo_urls_in_every_documented_place() {
        let want = vec!["https://v/1.mp4".to_string()];
        for data in [
            json!({"response": {"resultUrls": ["https://v/1.mp4"]}}),
            json!({"response": {"resultUrls": "[\"https://v/1.mp4\"]"}}),
            json!({"info": {"resultUrls": "[\"https://v/1.mp4\"]"}}),
            json!({"resultUrls": "[\"https://v/1.mp4\"]"}),
        ] {
            let r = Record::from_data(Product::Veo, "t", data.clone()).unwrap();
            assert_eq!(r.media_urls(), want, "{data}");
        }
    }

    #[test]
    fn market_result_json_string_or_object() {
        for result in [
            json!("{\"resultUrls\":[\"https://m/1.png\"]}"),
            json!({"resultUrls": ["https://m/1.png"]}),
        ] {
            let r = Record::from_data(Product::Market, "t", json!({"state": "success", "resultJson": result})).unwrap();
            assert_eq!(r.media_urls(), vec!["https://m/1.png".to_string()]);
        }
        let text = json!({"state": "success", "resultJson": "{\"resultObject\":{\"text\":\"hi\"}}"});
        assert!(Record::from_data(Product::Market, "t", text)
            .unwrap()
            .media_urls()
            .is_empty());
    }
}
