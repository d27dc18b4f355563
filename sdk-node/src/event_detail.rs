//! An event's fields as structured data: the `NodeEvent` is read through the API's descriptor
//! set (prost-reflect), so every field of every event kind, present and future, reaches
//! JavaScript without a hand-kept copy of the proto. Field names are the proto's JSON names
//! (camelCase), bytes are lowercase hex, enums their value names, 64-bit numbers `number`s.

use std::sync::OnceLock;

use mehr_sdk::proto as pb;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};
use serde_json::{Map, Value as Json};

/// The API's descriptors, decoded once per process (they are constant).
fn node_event_descriptor() -> Option<&'static MessageDescriptor> {
    static DESCRIPTOR: OnceLock<Option<MessageDescriptor>> = OnceLock::new();
    DESCRIPTOR
        .get_or_init(|| {
            DescriptorPool::decode(mehr_proto::FILE_DESCRIPTOR_SET)
                .ok()?
                .get_message_by_name("mehr.v1.NodeEvent")
        })
        .as_ref()
}

/// The event's kind (the set `kind` field's proto name, `function_registered`, …) and its
/// fields as a JSON object; `("unknown", {})` for a kind this build does not know.
pub(crate) fn kind_and_detail(event: &pb::NodeEvent) -> (String, Json) {
    let unknown = || ("unknown".to_string(), Json::Object(Map::new()));
    let Some(descriptor) = node_event_descriptor() else {
        return unknown();
    };
    let Ok(message) = DynamicMessage::decode(descriptor.clone(), event.encode_to_vec().as_slice())
    else {
        return unknown();
    };
    let kind_field = descriptor
        .oneofs()
        .find(|oneof| oneof.name() == "kind")
        .and_then(|oneof| oneof.fields().find(|field| message.has_field(field)));
    match kind_field {
        Some(field) => (
            field.name().to_string(),
            json_of(&field, &message.get_field(&field)),
        ),
        None => unknown(),
    }
}

/// A message as a JSON object: every field, defaults included, except oneof members not set
/// (and unset `optional` fields, which are `null`).
fn object_of(message: &DynamicMessage) -> Json {
    let mut object = Map::new();
    for field in message.descriptor().fields() {
        let set = message.has_field(&field);
        match field.containing_oneof() {
            Some(oneof) if !oneof.is_synthetic() && !set => continue,
            Some(_) if !set => {
                object.insert(field.json_name().to_string(), Json::Null);
            }
            _ => {
                let value = json_of(&field, &message.get_field(&field));
                object.insert(field.json_name().to_string(), value);
            }
        }
    }
    Json::Object(object)
}

fn json_of(field: &FieldDescriptor, value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n as f64),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n as f64),
        Value::F32(n) => Json::from(f64::from(*n)),
        Value::F64(n) => Json::from(*n),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(hex::encode(b)),
        Value::EnumNumber(number) => match field.kind() {
            Kind::Enum(descriptor) => descriptor
                .get_value(*number)
                .map(|v| Json::String(v.name().to_string()))
                .unwrap_or_else(|| Json::from(*number)),
            _ => Json::from(*number),
        },
        Value::Message(message) => object_of(message),
        Value::List(items) => Json::Array(items.iter().map(|v| json_of(field, v)).collect()),
        Value::Map(entries) => {
            let value_field = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => field.clone(),
            };
            Json::Object(
                entries
                    .iter()
                    .map(|(key, v)| (map_key(key), json_of(&value_field, v)))
                    .collect(),
            )
        }
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}
