//! The request-body schemas of the OpenAPI document, applied to bodies serde accepted.
//!
//! serde is more lenient than the document in one way the handlers cannot see afterwards: it
//! reads a struct from a JSON array of its fields (`"runWith": [null, null]`). Every body is
//! therefore also checked against the *shape* of its schema (types, properties, items and the
//! choices between them, every other keyword removed); the other rules (required, patterns,
//! bounds) are the handlers' own checks, which name the field and say what to do in words the
//! schema's messages cannot.

use std::collections::HashMap;
use std::sync::OnceLock;

use ggprov_domain::FieldProblem;
use serde_json::{Value, json};

/// A request body type and the component schema it is documented with.
pub(crate) trait BodySchema {
    /// `None`: the body is interpreted by the domain, which checks its shape itself.
    const SCHEMA: Option<&'static str>;
}

impl BodySchema for Value {
    const SCHEMA: Option<&'static str> = None;
}

/// One validator per body schema, compiled from the finished document on first use.
fn validators() -> &'static HashMap<String, jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<String, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let doc = crate::openapi::openapi();
        let mut components = doc["components"].clone();
        if let Some(schemas) = components["schemas"].as_object_mut() {
            for schema in schemas.values_mut() {
                *schema = shape(schema);
            }
        }
        let names: Vec<String> =
            components["schemas"].as_object().map(|s| s.keys().cloned().collect()).unwrap_or_default();
        names
            .into_iter()
            .filter(|name| name.starts_with("New") || name.ends_with("Body"))
            .map(|name| {
                let schema = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "$ref": format!("#/components/schemas/{name}"),
                    "components": components,
                });
                let validator = jsonschema::draft202012::new(&schema)
                    .unwrap_or_else(|err| panic!("the schema of {name} compiles: {err}"));
                (name, validator)
            })
            .collect()
    })
}

/// The structural part of a schema: `type`, `$ref`, the schemas of properties and items, and
/// `anyOf` / `allOf` between such parts (`oneOf` becomes `anyOf`).
fn shape(schema: &Value) -> Value {
    let Some(map) = schema.as_object() else { return schema.clone() };
    let mut kept = serde_json::Map::new();
    for (key, value) in map {
        let kept_value = match key.as_str() {
            "type" | "$ref" => value.clone(),
            "items" | "additionalProperties" if value.is_object() => shape(value),
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, property)| (name.clone(), shape(property)))
                    .collect(),
            ),
            "prefixItems" | "oneOf" | "anyOf" | "allOf" => {
                Value::Array(value.as_array().into_iter().flatten().map(shape).collect())
            }
            _ => continue,
        };
        // Stripped of `required`, two choices can have the same shape (`{"percent"}` or
        // `{"count"}`), and `oneOf` would refuse every body: which one holds is a handler rule.
        let key = if key == "oneOf" { "anyOf" } else { key.as_str() };
        kept.insert(key.to_owned(), kept_value);
    }
    Value::Object(kept)
}

/// Values of the wrong JSON type, each with its field in the `a.b[3].c` notation.
pub(crate) fn type_problems(schema: &str, body: &Value) -> Vec<FieldProblem> {
    let Some(validator) = validators().get(schema) else { return Vec::new() };
    validator
        .iter_errors(body)
        .map(|error| FieldProblem {
            field: field_of(error.instance_path().as_str()),
            problem: format!("{} has the wrong type: {error}", short(error.instance())),
        })
        .collect()
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 { format!("{}...", &text[..text.floor_char_boundary(57)]) } else { text }
}

/// `/cores/0/name` → `cores[0].name`.
fn field_of(pointer: &str) -> String {
    let mut field = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            field.push_str(&format!("[{segment}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&segment);
        }
    }
    if field.is_empty() { "body".to_owned() } else { field }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_struct_sent_as_an_array_is_a_type_problem_with_its_field() {
        let body = json!({"name": "t", "components": [{"key": "k", "version": "1.0.0", "runWith": [null, null]}]});
        let problems = type_problems("NewTemplateBody", &body);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "components[0].runWith");
        assert!(
            type_problems("NewTemplateBody", &json!({"name": "t", "components": []})).is_empty(),
            "other rules are the handlers'"
        );
        assert_eq!(field_of(""), "body");
    }
}
