//! `schemas/records.schema.json`, generated from the record types of every crate: one
//! definition per kind (its fields, `kind` fixed, `v` its schema version), the string types
//! they share, and a rule that lets lines of other kinds pass.

use lct_core::record::Record;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// The kinds lct's tools print and read, with the crate that owns each (the schema test
/// checks that these are exactly `lct_core::record::KINDS`).
pub fn document() -> Value {
    let mut generator: SchemaGenerator = SchemaSettings::draft2020_12().into_generator();
    let mut kinds: Vec<(&str, u32, Value)> = Vec::new();
    macro_rules! kind {
        ($t:ty) => {
            kinds.push((<$t>::KIND, <$t>::VERSION, <$t as JsonSchema>::json_schema(&mut generator).to_value()));
        };
    }
    kind!(lct_core::record::Node);
    kind!(lct_core::record::Cluster);
    kind!(lct_core::record::NodeSpec);
    kind!(lct_core::record::Volume);
    kind!(lct_api::local::LabStatus);
    kind!(lct_api::local::RegionInfo);
    kind!(lct_inventory::exec::ExecResult);
    kind!(lct_hosts::HostEntry);
    kind!(lct_hosts::ApplyReport);
    kind!(lct_hosts::PushReport);
    kind!(lct_dns::DnsRecord);
    kind!(lct_dns::client::ZoneUpdate);
    kind!(lct_dns::linode::LinodeChange);
    kind!(lct_dns::metrics::DnsStat);
    kind!(lct_dns::keyroll::DnsKey);
    kind!(lct_dns::zonekeys::DsRecord);
    kind!(lct_fw::Ruleset);
    kind!(lct_fw::SyncReport);
    kind!(lct_fw::cloud::CloudSync);
    kind!(lct_mesh::model::MeshNode);
    kind!(lct_mesh::model::MeshPeer);
    kind!(lct_mesh::model::MeshConfig);
    kind!(lct_mesh::model::MeshApplied);
    kind!(lct_image::report::Report<lct_image::report::Created>);
    kind!(lct_image::report::Report<lct_image::report::Restored>);
    kind!(lct_image::report::Report<lct_image::report::Verified>);
    kind!(lct_image::report::Progress);
    kind!(lct_image::repo::Entry);
    kind!(lct_image::repo::Added);
    kind!(lct_image::repo::Pruned);
    kind!(lct_plan::records::PlanEvent);
    kind!(lct_plan::records::PlanSecrets);
    kind!(lct_plan::records::PlanReconciled);
    kind!(lct_plan::records::PlanBaked);
    kind!(lct_plan::records::PlanBakeStep);
    // What other tools keep in a cluster record (it keeps fields it does not know).
    let firewall = <lct_fw::FirewallSpec as JsonSchema>::json_schema(&mut generator).to_value();
    let services = <Vec<lct_dns::zone::Service> as JsonSchema>::json_schema(&mut generator).to_value();

    let mut defs: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    let mut one_of = Vec::new();
    for (kind, version, mut schema) in kinds {
        let obj = schema.as_object_mut().expect("a record is an object");
        obj.remove("$schema");
        obj.remove("title");
        let props = obj.entry("properties").or_insert_with(|| json!({})).as_object_mut().expect("properties");
        let mut with_envelope = Map::new();
        with_envelope.insert("kind".into(), json!({ "const": kind }));
        with_envelope.insert(
            "v".into(),
            json!({ "description": "The schema version; a line without it is version 1.", "type": "integer", "minimum": 1, "maximum": version }),
        );
        if kind == "cluster" {
            props.insert("firewall".into(), firewall.clone());
            props.insert("services".into(), services.clone());
        }
        with_envelope.append(props);
        *props = with_envelope;
        let required = obj.entry("required").or_insert_with(|| json!([])).as_array_mut().expect("required");
        required.insert(0, json!("kind"));
        defs.insert(kind.to_string(), schema);
        one_of.push(json!({ "$ref": format!("#/$defs/{kind}") }));
    }
    let names: Vec<Value> =
        one_of.iter().map(|r| json!(r["$ref"].as_str().unwrap().trim_start_matches("#/$defs/"))).collect();
    one_of.push(json!({ "properties": { "kind": { "not": { "enum": names } } } }));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lct.invalid/schemas/records.schema.json",
        "title": "lct record stream",
        "description": "One JSON object per line, each with a kind. Generated from the record types (LCT_BLESS=1 cargo test -p lct-tests --test schema writes it). Lines of other kinds pass through the tools unchanged.",
        "type": "object",
        "required": ["kind"],
        "oneOf": one_of,
        "$defs": defs,
    })
}

/// The kinds a document (this one, or the file) describes, in its order.
pub fn kinds(doc: &Value) -> Vec<String> {
    let refs = doc["oneOf"].as_array().map(Vec::as_slice).unwrap_or_default();
    refs.iter().filter_map(|r| r["$ref"].as_str()?.strip_prefix("#/$defs/").map(String::from)).collect()
}

/// The document as the file holds it.
pub fn text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("a schema serializes");
    text.push('\n');
    text
}
