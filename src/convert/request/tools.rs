//! Tools of an Anthropic request → OpenAI `tools` / `tool_choice`, and the
//! tool ids and names that appear in history.
//!
//! Receives lazily parsed values from [`super::convert_inspected`] and
//! [`super::messages`], and appends OpenAI JSON. Schemas are copied raw,
//! except for Gemini (see [`crate::convert::schema`]). Tool names longer
//! than 64 characters are shortened the same way everywhere they appear
//! (definitions, `tool_choice`, assistant history), and the definitions'
//! pairs are collected for the response side. `ccpx_` tool ids are decoded
//! back to the upstream's own ids.

use crate::json::Lazy;

use super::{bad, close_array, present, raw_body};
use crate::convert::quirks::Quirks;
use crate::convert::tool_names::{self, ToolNames};
use crate::convert::{schema, tool_ids};
use crate::error::ProxyError;
use crate::json;

/// Whether any tool's `type` starts with `web_search`. Each tool's fields
/// are visited, but its schema and description are skipped via the tape.
pub(super) fn has_web_search(tools: &Lazy<'_>) -> bool {
    let Some(mut iter) = tools.elements() else { return false };
    iter.any(|t| t.get("type").is_some_and(|ty| ty.as_str().is_some_and(|s| s.starts_with("web_search"))))
}

/// Writes a tool name (a JSON string value) as the upstream knows it;
/// shortened pairs are recorded in `names` when given.
pub(super) fn write_name(out: &mut Vec<u8>, name: &Lazy<'_>, names: Option<&mut ToolNames>) {
    // Escaped text is never shorter than the name it encodes.
    if raw_body(name).len() <= tool_names::MAX_LEN {
        out.extend_from_slice(name.as_raw_str().as_bytes());
        return;
    }
    let full = name.as_str().unwrap_or_default();
    let full = &*full;
    match tool_names::upstream_name(full) {
        std::borrow::Cow::Borrowed(_) => out.extend_from_slice(name.as_raw_str().as_bytes()),
        std::borrow::Cow::Owned(short) => {
            json::write_str(out, &short);
            if let Some(names) = names {
                names.record(&short, full);
            }
        }
    }
}

/// Writes a client tool id (a JSON string value) as the upstream's id and
/// returns the Gemini thought signature it carried, if any.
pub(super) fn write_id(out: &mut Vec<u8>, id: &Lazy<'_>) -> Option<String> {
    let decoded =
        raw_body(id).starts_with(tool_ids::PREFIX).then(|| id.as_str().and_then(|s| tool_ids::decode(&s))).flatten();
    match decoded {
        Some(d) => {
            json::write_str(out, &d.id);
            d.signature
        }
        None => {
            out.extend_from_slice(id.as_raw_str().as_bytes());
            None
        }
    }
}

/// Writes `,"tools":[...]` and returns whether any function tool was written.
pub(super) fn write_tools(
    out: &mut Vec<u8>,
    tools: Lazy<'_>,
    quirks: &Quirks,
    names: &mut ToolNames,
) -> Result<bool, ProxyError> {
    let iter = tools.elements().ok_or_else(|| bad("tools", "must be an array"))?;
    let mark = out.len();
    out.extend_from_slice(b",\"tools\":[");
    let mut written = 0usize;
    for (i, tool) in iter.enumerate() {
        let fields = tool.entries().ok_or_else(|| bad(format_args!("tools.{i}"), "must be an object"))?;
        let (mut ty, mut name, mut desc, mut input_schema) = (None, None, None, None);
        for (key, v) in fields {
            match &*key.name() {
                "type" => ty = Some(v),
                "name" => name = Some(v),
                "description" => desc = Some(v),
                "input_schema" => input_schema = Some(v),
                _ => {}
            }
        }
        if let Some(ty) = present(ty) {
            match ty.as_str().as_deref() {
                Some("custom") => {}
                Some(kind) => {
                    tracing::debug!(tool = i, kind, "skipping Anthropic server tool: no OpenAI equivalent");
                    continue;
                }
                None => return Err(bad(format_args!("tools.{i}.type"), "must be a string")),
            }
        }
        let name = name.filter(|n| n.is_str()).ok_or_else(|| bad(format_args!("tools.{i}.name"), "required string"))?;
        let input_schema = input_schema
            .filter(|s| s.is_object())
            .ok_or_else(|| bad(format_args!("tools.{i}.input_schema"), "required object"))?;
        out.extend_from_slice(b"{\"type\":\"function\",\"function\":{\"name\":");
        write_name(out, &name, Some(names));
        if let Some(desc) = present(desc) {
            if !desc.is_str() {
                return Err(bad(format_args!("tools.{i}.description"), "must be a string"));
            }
            out.extend_from_slice(b",\"description\":");
            out.extend_from_slice(desc.as_raw_str().as_bytes());
        }
        out.extend_from_slice(b",\"parameters\":");
        if quirks.gemini {
            schema::write_gemini(out, &input_schema)?;
        } else {
            out.extend_from_slice(input_schema.as_raw_str().as_bytes());
        }
        out.extend_from_slice(b"}},");
        written += 1;
    }
    if written == 0 {
        // OpenAI rejects an empty `tools` array.
        out.truncate(mark);
        return Ok(false);
    }
    close_array(out);
    Ok(true)
}

/// OpenAI rejects `tool_choice`/`parallel_tool_calls` without tools, so both
/// are only written when at least one function tool went out.
pub(super) fn write_tool_choice(out: &mut Vec<u8>, choice: Lazy<'_>, has_tools: bool) -> Result<(), ProxyError> {
    let fields = choice.entries().ok_or_else(|| bad("tool_choice", "must be an object"))?;
    let (mut ty, mut name, mut no_parallel) = (None, None, false);
    for (key, v) in fields {
        match &*key.name() {
            "type" => ty = Some(v),
            "name" => name = Some(v),
            "disable_parallel_tool_use" => {
                no_parallel = match v.as_bool() {
                    Some(b) => b,
                    None if v.is_null() => false,
                    None => return Err(bad("tool_choice.disable_parallel_tool_use", "must be a boolean")),
                }
            }
            _ => {}
        }
    }
    let ty = ty.ok_or_else(|| bad("tool_choice.type", "required"))?;
    let value: &[u8] = match ty.as_str().as_deref() {
        Some("auto") => b"\"auto\"",
        Some("any") => b"\"required\"",
        Some("none") => b"\"none\"",
        Some("tool") => b"",
        _ => return Err(bad("tool_choice.type", "must be \"auto\", \"any\", \"tool\" or \"none\"")),
    };
    let name = match (value.is_empty(), name) {
        (true, Some(n)) if n.is_str() => Some(n),
        (true, _) => return Err(bad("tool_choice.name", "required string when type is \"tool\"")),
        (false, _) => None,
    };
    if !has_tools {
        return Ok(());
    }
    out.extend_from_slice(b",\"tool_choice\":");
    match name {
        Some(n) => {
            out.extend_from_slice(b"{\"type\":\"function\",\"function\":{\"name\":");
            write_name(out, &n, None);
            out.extend_from_slice(b"}}");
        }
        None => out.extend_from_slice(value),
    }
    if no_parallel {
        out.extend_from_slice(b",\"parallel_tool_calls\":false");
    }
    Ok(())
}
