//! The API reference of `docs/rest-api.md`, written from the OpenAPI
//! document (so the page cannot drift from the code: a test compares
//! them).

use serde_json::Value;
use std::fmt::Write;

/// Where a schema reference points: `#/components/schemas/X` → `X`.
fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next())
}

/// A schema in a few words: `JobDetail`, `array of string`, `integer (int64)`.
fn describe(s: &Value) -> String {
    if let Some(name) = ref_name(s) {
        return format!("[`{name}`](#{})", name.to_lowercase());
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let parts: Vec<String> =
                alts.iter().filter(|a| a.get("type") != Some(&"null".into())).map(describe).collect();
            let nullable = alts.iter().any(|a| a.get("type") == Some(&"null".into()));
            return format!("{}{}", parts.join(" or "), if nullable { " or null" } else { "" });
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect::<Vec<_>>().join(" or ")
                + if ts.iter().any(|t| t == "null") { " or null" } else { "" }
        }
        _ => "any".to_owned(),
    };
    if ty.starts_with("array") {
        return format!("array of {}", s.get("items").map_or_else(|| "any".to_owned(), describe));
    }
    if ty.starts_with("object")
        && let Some(extra) = s.get("additionalProperties")
    {
        return format!("map of string to {}", if extra.is_object() { describe(extra) } else { "any".to_owned() });
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")).collect();
        return format!("one of {}", names.join(", "));
    }
    match s.get("format").and_then(Value::as_str) {
        Some(f) => format!("{ty} ({f})"),
        None => ty,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The reference in Markdown: every operation (method, path, parameters,
/// body, answers), then every schema with its fields.
pub fn markdown(doc: &Value) -> String {
    let mut out = String::new();
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let _ = writeln!(out, "### Operations\n");
    for (path, item) in &paths {
        let Some(item) = item.as_object() else { continue };
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let _ = writeln!(out, "#### `{} {path}`\n", method.to_uppercase());
            if let Some(d) = op.get("description").or_else(|| op.get("summary")).and_then(Value::as_str) {
                let _ = writeln!(out, "{}\n", one_line(d));
            }
            if let Some(params) = op.get("parameters").and_then(Value::as_array) {
                for p in params {
                    let _ = writeln!(
                        out,
                        "- parameter `{}` ({}): {}",
                        p["name"].as_str().unwrap_or(""),
                        p["in"].as_str().unwrap_or(""),
                        one_line(p["description"].as_str().unwrap_or(""))
                    );
                }
            }
            if let Some(content) = op.pointer("/requestBody/content").and_then(Value::as_object) {
                for (kind, c) in content {
                    let _ = writeln!(out, "- body (`{kind}`): {}", describe(&c["schema"]));
                }
            }
            if let Some(responses) = op.get("responses").and_then(Value::as_object) {
                for (status, r) in responses {
                    let schema = r
                        .get("content")
                        .and_then(Value::as_object)
                        .and_then(|c| c.values().next())
                        .map(|c| format!(" — {}", describe(&c["schema"])))
                        .unwrap_or_default();
                    let what = one_line(r["description"].as_str().unwrap_or(""));
                    let what = if what.is_empty() { String::new() } else { format!(" {what}") };
                    let _ = writeln!(out, "- `{status}`{what}{schema}");
                }
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(out, "### Schemas\n");
    let schemas = doc.pointer("/components/schemas").and_then(Value::as_object).cloned().unwrap_or_default();
    for (name, s) in &schemas {
        let _ = writeln!(out, "#### {name}\n");
        if let Some(d) = s.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", one_line(d));
        }
        match s.get("properties").and_then(Value::as_object) {
            Some(props) => {
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let _ = writeln!(out, "| field | type | |\n| --- | --- | --- |");
                for (field, p) in props {
                    let need = if required.contains(&field.as_str()) { "" } else { " (optional)" };
                    let what = one_line(p.get("description").and_then(Value::as_str).unwrap_or(""));
                    let _ = writeln!(out, "| `{field}`{need} | {} | {what} |", describe(p).replace('|', "\\|"));
                }
            }
            None => {
                let _ = writeln!(out, "{}", describe(s));
            }
        }
        let _ = writeln!(out);
    }
    out
}
