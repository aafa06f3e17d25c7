//! Request binding with Go `encoding/json` semantics.
//!
//! dfget sends `rawUrl`, `cid`, `ip` where the API declares `rawURL`, `cID`, `IP`:
//! keys are matched to the declared field names ignoring ASCII case (an exact-case key
//! wins), unknown keys are ignored, `null` means "absent", and only the first JSON value
//! of the body is read. Type errors are strict and name the field.

use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use super::error::ApiError;

/// The declared field names of a struct, read from its `Deserialize` impl.
pub fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// Maps the keys of a JSON object onto `fields` (Go's case-insensitive rule).
pub fn fold_keys(object: Map<String, Value>, fields: &[&'static str]) -> Map<String, Value> {
    let mut exact = Map::new();
    let mut folded = Map::new();
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        if let Some(f) = fields.iter().find(|f| **f == key) {
            exact.insert((*f).to_string(), value);
        } else if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
            folded.insert((*f).to_string(), value);
        }
    }
    for (k, v) in exact {
        folded.insert(k, v);
    }
    folded
}

/// Binds an already-parsed JSON value to `T` with the rules above.
pub fn bind_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    let value = match value {
        Value::Object(map) => Value::Object(fold_keys(map, struct_fields::<T>())),
        Value::Null => Value::Object(Map::new()),
        other => {
            return Err(ApiError::BadRequest(format!("request body must be a JSON object, got {}", kind(&other))));
        }
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::BadRequest(format!("{path}: {}", e.into_inner()))
    })
}

/// Parses the first JSON value of `body` and binds it.
pub fn bind_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("empty request body".into()));
    }
    let first = serde_json::Deserializer::from_slice(body).into_iter::<Value>().next();
    match first {
        Some(Ok(value)) => bind_value(value),
        Some(Err(e)) => Err(ApiError::BadRequest(format!("malformed JSON body: {e}"))),
        None => Err(ApiError::BadRequest("empty request body".into())),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a request body up to the configured limit (413 beyond it).
pub async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<web::Bytes, ApiError> {
    let limit = req.app_data::<web::Data<super::AppState>>().map_or(1024 * 1024, |s| s.max_body_bytes);
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::TooLarge(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The query string as ordered key/value pairs (keys may repeat).
pub fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default)]
    #[serde(default)]
    struct Req {
        #[serde(rename = "cID")]
        cid: String,
        #[serde(rename = "IP")]
        ip: String,
        port: i32,
    }

    #[test]
    fn case_insensitive_keys_and_exact_wins() {
        let r: Req = bind_json(br#"{"CID":"a","ip":"1.2.3.4","Ip":"x","IP":"5.6.7.8","port":null,"other":1}"#).unwrap();
        assert_eq!(r.cid, "a");
        assert_eq!(r.ip, "5.6.7.8");
        assert_eq!(r.port, 0);
    }

    #[test]
    fn strict_types_name_field() {
        let e = bind_json::<Req>(br#"{"port":"20001"}"#).unwrap_err();
        assert!(e.to_string().starts_with("port:"), "{e}");
        let e = bind_json::<Req>(br#"{"port":1.5}"#).unwrap_err();
        assert!(e.to_string().starts_with("port:"), "{e}");
    }

    #[test]
    fn trailing_bytes_ignored_and_errors() {
        let r: Req = bind_json(br#"{"cid":"a"} trailing"#).unwrap();
        assert_eq!(r.cid, "a");
        assert!(bind_json::<Req>(b"").is_err());
        assert!(bind_json::<Req>(b"{").is_err());
        assert!(bind_json::<Req>(b"[1]").is_err());
    }
}
