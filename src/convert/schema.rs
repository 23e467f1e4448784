//! Tool `input_schema` → a JSON schema Gemini's OpenAI endpoint accepts.
//!
//! Receives one tool's `input_schema` (a lazily parsed, already validated
//! value) from the request converter when the provider has the `gemini`
//! quirk, and appends the cleaned schema. Every other provider gets the
//! schema copied raw; this is the one place a schema is rewritten.
//!
//! Why an allowlist: Gemini turns `parameters` into its `Schema` message,
//! an OpenAPI 3.0 subset, and refuses any field it does not know with
//! `400 Invalid JSON payload received. Unknown name "exclusiveMinimum" ...
//! Cannot find field` (reported for `$schema`, `additionalProperties`,
//! `exclusiveMinimum`/`exclusiveMaximum`, `propertyNames`, `const`,
//! `$ref`/`$defs`, `examples` and more, by Claude Code users among others).
//! So only the `Schema` fields are kept: type, format, title, description,
//! nullable, enum, items, minItems, maxItems, properties, required,
//! minProperties, maxProperties, minLength, maxLength, pattern, example,
//! default, anyOf, propertyOrdering, minimum, maximum. Everything else
//! (`$schema`, `$id`, `$ref`, `$defs`, `definitions`, `additionalProperties`,
//! `patternProperties`, `propertyNames`, `exclusiveMinimum`,
//! `exclusiveMaximum`, `multipleOf`, `allOf`, `not`, `if`/`then`/`else`,
//! `examples`, `readOnly`, `writeOnly`, `contentEncoding`, ...) is dropped:
//! a lost constraint only makes the model's input less checked, while a kept
//! one fails the whole request.
//!
//! A few rewrites keep meaning instead of dropping it:
//! - `type: ["string","null"]` → `type:"string"` + `nullable:true`
//!   (`Schema.type` is a single value).
//! - `oneOf` → `anyOf` (when there is no `anyOf`): close enough for input
//!   the tool validates anyway.
//! - `const: "x"` (strings only) → `enum: ["x"]` (when there is no `enum`).
//! - `format` is kept only for the values Gemini allows (`enum`,
//!   `date-time`, `int32`, `int64`, `float`, `double`); Claude Code's
//!   `format:"uri"` is otherwise a 400.
//! - Tuple `items: [a, b]` → `items: a`.
//!
//! Not handled: `$ref` is dropped, not inlined, so a referenced subschema
//! loses its shape (it becomes `{}`); Claude Code's own tools use none.
//!
//! Property names under `properties` are names, not keywords, so a property
//! called `default` or `$ref` survives. The walk recurses once per schema
//! level, so rewriting stops at [`MAX_SCHEMA_DEPTH`] levels
//! (a quarter of [`json::MAX_DEPTH`]); deeper subschemas are copied raw.
//! Real tool schemas are under ten levels deep.

use crate::json::Lazy;

use crate::error::ProxyError;
use crate::json;

const KEEP: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "default",
    "anyOf",
    "propertyOrdering",
    "minimum",
    "maximum",
];

/// Schema levels rewritten before the rest is copied raw.
pub(crate) const MAX_SCHEMA_DEPTH: usize = json::MAX_DEPTH / 4;

const FORMATS: &[&str] = &["enum", "date-time", "int32", "int64", "float", "double"];

/// Appends the cleaned form of `schema`.
pub(crate) fn write_gemini(out: &mut Vec<u8>, schema: &Lazy<'_>) -> Result<(), ProxyError> {
    write_schema(out, schema, 0)
}

/// Comma bookkeeping for one object being written.
struct Obj {
    first: bool,
}

impl Obj {
    fn key(&mut self, out: &mut Vec<u8>, key: &str) {
        if !self.first {
            out.push(b',');
        }
        self.first = false;
        json::write_str(out, key);
        out.push(b':');
    }
}

fn write_schema(out: &mut Vec<u8>, v: &Lazy<'_>, depth: usize) -> Result<(), ProxyError> {
    if depth >= MAX_SCHEMA_DEPTH || !v.is_object() {
        // `true`/`false` schemas, and subschemas too deep to walk.
        out.extend_from_slice(v.as_raw_str().as_bytes());
        return Ok(());
    }
    let fields = v.entries().into_iter().flatten();
    let mut obj = Obj { first: true };
    out.push(b'{');
    let (mut any_of, mut one_of, mut konst, mut has_enum, mut nullable) = (false, None, None, false, false);
    for (key, val) in fields {
        match &*key.name() {
            "properties" if val.is_object() => {
                obj.key(out, "properties");
                let mut props = Obj { first: true };
                out.push(b'{');
                for (name, sub) in val.entries().into_iter().flatten() {
                    props.key(out, &name.name());
                    write_schema(out, &sub, depth + 1)?;
                }
                out.push(b'}');
            }
            "items" if val.is_array() => {
                let first = val.elements().into_iter().flatten().next();
                if let Some(first) = first {
                    obj.key(out, "items");
                    write_schema(out, &first, depth + 1)?;
                }
            }
            "items" => {
                obj.key(out, "items");
                write_schema(out, &val, depth + 1)?;
            }
            "anyOf" if val.is_array() => {
                any_of = true;
                obj.key(out, "anyOf");
                write_schema_list(out, &val, depth)?;
            }
            "oneOf" if val.is_array() => one_of = Some(val),
            "const" => konst = Some(val),
            "type" if val.is_array() => {
                let mut picked = None;
                let mut null = false;
                for t in val.elements().into_iter().flatten() {
                    match t.as_str().as_deref() {
                        Some("null") => null = true,
                        Some(_) if picked.is_none() => picked = Some(t),
                        _ => {}
                    }
                }
                if let Some(t) = picked {
                    obj.key(out, "type");
                    out.extend_from_slice(t.as_raw_str().as_bytes());
                }
                if null && !nullable {
                    nullable = true;
                    obj.key(out, "nullable");
                    out.extend_from_slice(b"true");
                }
            }
            "nullable" if nullable => {}
            "format" if val.as_str().is_some_and(|f| FORMATS.contains(&&*f)) => {
                obj.key(out, "format");
                out.extend_from_slice(val.as_raw_str().as_bytes());
            }
            "format" => {}
            k if KEEP.contains(&k) => {
                has_enum |= k == "enum";
                nullable |= k == "nullable";
                obj.key(out, k);
                out.extend_from_slice(val.as_raw_str().as_bytes());
            }
            _ => {}
        }
    }
    if let (Some(list), false) = (one_of, any_of) {
        obj.key(out, "anyOf");
        write_schema_list(out, &list, depth)?;
    }
    if let (Some(c), false) = (konst, has_enum) {
        if c.is_str() {
            obj.key(out, "enum");
            out.push(b'[');
            out.extend_from_slice(c.as_raw_str().as_bytes());
            out.push(b']');
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_schema_list(out: &mut Vec<u8>, list: &Lazy<'_>, depth: usize) -> Result<(), ProxyError> {
    out.push(b'[');
    for (i, s) in list.elements().into_iter().flatten().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_schema(out, &s, depth + 1)?;
    }
    out.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::{json, Value};

    fn clean(schema: &str) -> Value {
        assert!(json::validate(schema.as_bytes(), json::MAX_DEPTH).is_ok());
        let v = Lazy::of_valid(schema);
        let mut out = Vec::new();
        write_gemini(&mut out, &v).unwrap();
        sonic_rs::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn claude_code_shaped_schema_is_cleaned() {
        let got = clean(
            r##"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false,
            "properties":{"url":{"type":"string","format":"uri","description":"The URL"},
              "timeout":{"type":"number","exclusiveMinimum":0,"maximum":600000},
              "when":{"type":"string","format":"date-time"},
              "opts":{"type":"object","propertyNames":{"pattern":"^x"},"patternProperties":{"^x":{}},
                      "properties":{"depth":{"type":"integer","minimum":0,"default":1}}},
              "tags":{"type":"array","items":{"type":"string","enum":["a","b"],"$ref":"#/x"},"minItems":1}},
            "required":["url"],"$defs":{"x":{"type":"string"}}}"##,
        );
        assert_eq!(
            got,
            json!({"type":"object",
                "properties":{"url":{"type":"string","description":"The URL"},
                  "timeout":{"type":"number","maximum":600000},
                  "when":{"type":"string","format":"date-time"},
                  "opts":{"type":"object","properties":{"depth":{"type":"integer","minimum":0,"default":1}}},
                  "tags":{"type":"array","items":{"type":"string","enum":["a","b"]},"minItems":1}},
                "required":["url"]})
        );
    }

    #[test]
    fn property_names_that_look_like_keywords_survive() {
        let got = clean(r#"{"type":"object","properties":{"default":{"type":"string"},"$ref":{"const":"k"}}}"#);
        assert_eq!(got, json!({"type":"object","properties":{"default":{"type":"string"},"$ref":{"enum":["k"]}}}));
    }

    #[test]
    fn rewrites_keep_meaning() {
        assert_eq!(clean(r#"{"type":["string","null"]}"#), json!({"type":"string","nullable":true}));
        assert_eq!(clean(r#"{"nullable":true,"type":["null","integer"]}"#), json!({"nullable":true,"type":"integer"}));
        assert_eq!(
            clean(r#"{"oneOf":[{"type":"string","minLength":1},{"type":"number","multipleOf":2}]}"#),
            json!({"anyOf":[{"type":"string","minLength":1},{"type":"number"}]})
        );
        assert_eq!(
            clean(r#"{"anyOf":[{"type":"string"}],"oneOf":[{"type":"number"}]}"#),
            json!({"anyOf":[{"type":"string"}]})
        );
        assert_eq!(clean(r#"{"const":3}"#), json!({}));
        assert_eq!(clean(r#"{"enum":["a"],"const":"b"}"#), json!({"enum":["a"]}));
        assert_eq!(
            clean(r#"{"type":"array","items":[{"type":"string","title":"t"},{"type":"number"}]}"#),
            json!({"type":"array","items":{"type":"string","title":"t"}})
        );
        assert_eq!(clean(r#"{"type":"array","items":[]}"#), json!({"type":"array"}));
        assert_eq!(clean(r#"{"properties":{"a":true}}"#), json!({"properties":{"a":true}}));
    }

    #[test]
    fn escapes_in_names_and_values_survive() {
        let got = clean(r#"{"properties":{"q\"uote\\":{"description":"line\nbreak \u00e9"}}}"#);
        assert_eq!(got, json!({"properties":{"q\"uote\\":{"description":"line\nbreak é"}}}));
    }

    #[test]
    fn deep_schemas_stay_bounded() {
        // sonic-rs itself needs more than a test thread's 2 MB to parse this
        // deep in a debug build; the point here is that the walk stops.
        let t = std::thread::Builder::new().stack_size(64 << 20).spawn(deep_schema).unwrap();
        t.join().unwrap();
    }

    fn deep_schema() {
        // The deepest schema a body within json::MAX_DEPTH can hold.
        let depth = json::MAX_DEPTH - 3;
        let s = format!("{}{}", r#"{"items":"#.repeat(depth), r#"{"$id":"x"}"#.to_owned() + &"}".repeat(depth));
        assert!(json::validate(s.as_bytes(), json::MAX_DEPTH).is_ok());
        let v = Lazy::of_valid(&s);
        let mut out = Vec::new();
        write_gemini(&mut out, &v).unwrap();
        let _: Value = sonic_rs::from_slice(&out).unwrap();
        // Cleaned down to the bound, raw below it.
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#"{"$id":"x"}"#));
        let shallow = format!("{}{}", r#"{"items":"#.repeat(5), r#"{"$id":"x"}"#.to_owned() + &"}".repeat(5));
        assert!(!clean(&shallow).to_string().contains("$id"));
    }
}
