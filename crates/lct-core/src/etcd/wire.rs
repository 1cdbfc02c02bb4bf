//! etcd's messages as its JSON gateway spells them (proto3 JSON): 64-bit numbers as strings,
//! bytes in base64, fields at their zero value left out.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes as base64 (keys and values).
pub mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&data_encoding::BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        data_encoding::BASE64.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// A 64-bit integer as a string (proto3 JSON); a plain number is read too.
pub mod int {
    use super::*;

    pub fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(i64),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(n),
            Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

fn zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Default, Deserialize)]
pub struct Header {
    #[serde(default, with = "int")]
    pub revision: i64,
}

/// A key and its value with their revisions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyValue {
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(default, with = "b64")]
    pub value: Vec<u8>,
    /// The revision at which the key was created (since its last deletion).
    #[serde(default, with = "int")]
    pub create_revision: i64,
    /// The revision of its last change: what a transaction compares.
    #[serde(default, with = "int")]
    pub mod_revision: i64,
    /// How many times it was written since it was created.
    #[serde(default, with = "int")]
    pub version: i64,
    /// The lease it is attached to (0: none).
    #[serde(default, with = "int")]
    pub lease: i64,
}

#[derive(Debug, Default, Serialize)]
pub struct RangeRequest {
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    #[serde(with = "int", skip_serializing_if = "zero")]
    pub limit: i64,
    #[serde(with = "int", skip_serializing_if = "zero")]
    pub revision: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keys_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub count_only: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct RangeResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
    #[serde(default)]
    pub more: bool,
    #[serde(default, with = "int")]
    pub count: i64,
}

#[derive(Debug, Default, Serialize)]
pub struct PutRequest {
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(with = "b64")]
    pub value: Vec<u8>,
    #[serde(with = "int", skip_serializing_if = "zero")]
    pub lease: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct PutResponse {
    #[serde(default)]
    pub header: Header,
}

#[derive(Debug, Default, Serialize)]
pub struct DeleteRequest {
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteResponse {
    #[serde(default, with = "int")]
    pub deleted: i64,
}

#[derive(Debug, Serialize)]
pub struct CompareWire {
    pub result: &'static str,
    pub target: &'static str,
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(serialize_with = "opt_int", skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<i64>,
    #[serde(serialize_with = "opt_int", skip_serializing_if = "Option::is_none")]
    pub create_revision: Option<i64>,
    #[serde(serialize_with = "opt_b64", skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<u8>>,
}

fn opt_int<S: Serializer>(n: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => s.serialize_str(&n.to_string()),
        None => s.serialize_none(),
    }
}

fn opt_b64<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&data_encoding::BASE64.encode(v)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Serialize)]
pub enum RequestOp {
    #[serde(rename = "request_range")]
    Range(RangeRequest),
    #[serde(rename = "request_put")]
    Put(PutRequest),
    #[serde(rename = "request_delete_range")]
    Delete(DeleteRequest),
}

#[derive(Debug, Serialize)]
pub struct TxnRequest {
    pub compare: Vec<CompareWire>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Debug, Deserialize)]
pub enum ResponseOp {
    #[serde(rename = "response_range")]
    Range(RangeResponse),
    #[serde(rename = "response_put")]
    Put(serde::de::IgnoredAny),
    #[serde(rename = "response_delete_range")]
    Delete(serde::de::IgnoredAny),
}

#[derive(Debug, Default, Deserialize)]
pub struct TxnResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub succeeded: bool,
    #[serde(default)]
    pub responses: Vec<ResponseOp>,
}

#[derive(Debug, Serialize)]
pub struct LeaseGrantRequest {
    #[serde(rename = "TTL", with = "int")]
    pub ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct LeaseGrantResponse {
    #[serde(rename = "ID", default, with = "int")]
    pub id: i64,
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct LeaseId {
    #[serde(rename = "ID", with = "int")]
    pub id: i64,
}

/// One message of a streamed answer (keepalive, watch).
#[derive(Debug, Deserialize)]
pub struct Streamed<T> {
    pub result: Option<T>,
    pub error: Option<GatewayError>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LeaseKeepAliveResponse {
    /// 0 (left out): the lease is gone.
    #[serde(rename = "TTL", default, with = "int")]
    pub ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct LeaseTimeToLiveResponse {
    #[serde(rename = "TTL", default, with = "int")]
    pub ttl: i64,
}

#[derive(Debug, Serialize)]
pub struct LeaseTimeToLiveRequest {
    #[serde(rename = "ID", with = "int")]
    pub id: i64,
}

#[derive(Debug, Serialize)]
pub struct WatchCreate {
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    #[serde(with = "int", skip_serializing_if = "zero")]
    pub start_revision: i64,
}

#[derive(Debug, Serialize)]
pub struct WatchRequest {
    pub create_request: WatchCreate,
}

#[derive(Debug, Default, Deserialize)]
pub struct WatchResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default, with = "int")]
    pub compact_revision: i64,
    #[serde(default)]
    pub cancel_reason: String,
    #[serde(default)]
    pub events: Vec<WatchEventWire>,
}

#[derive(Debug, Deserialize)]
pub struct WatchEventWire {
    /// Left out for PUT (proto3's zero value); "DELETE" for a deletion.
    #[serde(rename = "type", default)]
    pub kind: String,
    pub kv: KeyValue,
}

/// What the gateway sends instead of an answer: a gRPC status.
#[derive(Debug, Default, Deserialize)]
pub struct GatewayError {
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error: String,
}

/// The end of the range of keys starting with `prefix` (etcd's `range_end`): the prefix with
/// its last byte below 0xff incremented and what follows dropped; `[0]` (every key) when
/// all of its bytes are 0xff or it is empty.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"lct/"), b"lct0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_strings_and_bytes_base64() {
        let json = serde_json::to_string(&PutRequest { key: b"k".to_vec(), value: vec![0, 255], lease: 7 }).unwrap();
        assert_eq!(json, r#"{"key":"aw==","value":"AP8=","lease":"7"}"#);
        let kv: KeyValue =
            serde_json::from_str(r#"{"key":"aw==","mod_revision":"12","version":3,"value":"AP8="}"#).unwrap();
        assert_eq!(
            (kv.key, kv.value, kv.mod_revision, kv.version, kv.create_revision),
            (b"k".to_vec(), vec![0, 255], 12, 3, 0)
        );
        let cmp = CompareWire {
            result: "EQUAL",
            target: "MOD",
            key: b"k".to_vec(),
            mod_revision: Some(0),
            create_revision: None,
            value: None,
        };
        assert_eq!(
            serde_json::to_string(&cmp).unwrap(),
            r#"{"result":"EQUAL","target":"MOD","key":"aw==","mod_revision":"0"}"#
        );
        assert!(serde_json::from_str::<KeyValue>(r#"{"key":"not base64!"}"#).is_err());
        assert!(serde_json::from_str::<KeyValue>(r#"{"key":"aw==","version":"x"}"#).is_err());
    }
}
