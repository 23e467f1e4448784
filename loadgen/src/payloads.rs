//! Synthetic Anthropic Messages request bodies for `loadgen run --profile`.
//!
//! Receives a profile name and the `--stream` flag from the CLI; emits the JSON body bytes (built once,
//! before the run), plus the query string and extra headers the profile implies. All text is lorem-like
//! words from a seeded PRNG, so bodies are identical across runs and machines; nothing here is copied
//! from any real product's prompts. `claude-code` only reproduces the SHAPE of Claude Code's first turn.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// One short user message.
    Simple,
    /// Ten alternating messages.
    MultiTurn,
    /// One user message of about 24 KB.
    Large,
    /// Tool definitions plus tool_use / tool_result history.
    Tools,
    /// About 75 KB shaped like Claude Code's first turn (system blocks, 24 tools, adaptive thinking…).
    ClaudeCode,
}

const MODEL: &str = "claude-sonnet-4-5";
const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
    "file",
    "function",
    "buffer",
    "request",
    "stream",
    "token",
    "module",
    "parser",
    "config",
    "test",
];

/// Deterministic word generator (splitmix64).
pub struct Lorem(u64);

impl Lorem {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Sentences of lorem words, at least `bytes` long.
    pub fn text(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes + 16);
        let mut in_sentence = 0;
        while s.len() < bytes {
            let w = WORDS[(self.next() % WORDS.len() as u64) as usize];
            if in_sentence == 0 {
                if !s.is_empty() {
                    s.push(' ');
                }
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    s.extend(f.to_uppercase());
                    s.push_str(c.as_str());
                }
            } else {
                s.push(' ');
                s.push_str(w);
            }
            in_sentence += 1;
            if in_sentence > 6 + (self.next() % 10) as usize {
                s.push('.');
                in_sentence = 0;
            }
        }
        s
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from_digit((self.next() % 16) as u32, 16).unwrap_or('0')).collect()
    }
}

impl Profile {
    /// The request body; `"stream"` follows the `--stream` flag for every profile.
    pub fn body(self, stream: bool) -> Vec<u8> {
        let v = match self {
            Profile::Simple => simple(stream),
            Profile::MultiTurn => multi_turn(stream),
            Profile::Large => large(stream),
            Profile::Tools => tools(stream),
            Profile::ClaudeCode => claude_code(stream),
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// Query parameter the profile's real client adds to the URL.
    pub fn query(self) -> Option<&'static str> {
        match self {
            Profile::ClaudeCode => Some("beta=true"),
            _ => None,
        }
    }

    /// Extra request headers the profile's real client sends.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::ClaudeCode => &[
                (
                    "anthropic-beta",
                    "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
                ),
                ("x-app", "cli"),
            ],
            _ => &[],
        }
    }
}

fn simple(stream: bool) -> Value {
    let mut l = Lorem::new(1);
    json!({"model": MODEL, "max_tokens": 1024, "stream": stream,
           "messages": [{"role": "user", "content": l.text(120)}]})
}

fn multi_turn(stream: bool) -> Value {
    let mut l = Lorem::new(2);
    let messages: Vec<Value> = (0..10)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": l.text(300)})
        })
        .collect();
    json!({"model": MODEL, "max_tokens": 2048, "stream": stream, "messages": messages})
}

fn large(stream: bool) -> Value {
    let mut l = Lorem::new(3);
    let mut v = json!({"model": MODEL, "max_tokens": 4096, "stream": stream,
                       "system": "You are a careful assistant.", "messages": [{"role": "user", "content": ""}]});
    pad_to(&mut v, 24 * 1024, &mut l, |v| &mut v["messages"][0]["content"]);
    v
}

fn tools(stream: bool) -> Value {
    let mut l = Lorem::new(4);
    json!({
        "model": MODEL, "max_tokens": 4096, "stream": stream,
        "tools": [tool(&mut l, "get_weather", 200), tool(&mut l, "read_file", 300), tool(&mut l, "run_command", 400)],
        "tool_choice": {"type": "auto"},
        "messages": [
            {"role": "user", "content": l.text(200)},
            {"role": "assistant", "content": [
                {"type": "text", "text": l.text(80)},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": l.text(150)}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01B", "name": "read_file", "input": {"path": "src/main.rs", "limit": 200}},
                {"type": "tool_use", "id": "toolu_01C", "name": "run_command", "input": {"command": "ls -la", "timeout": 30}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": l.text(400)}]},
                {"type": "tool_result", "tool_use_id": "toolu_01C", "content": l.text(100), "is_error": true},
                {"type": "text", "text": l.text(60)}]}
        ]
    })
}

/// A tool with a schema of the kinds real agents use: strings, enums, integers, arrays of objects.
fn tool(l: &mut Lorem, name: &str, desc_bytes: usize) -> Value {
    json!({
        "name": name,
        "description": l.text(desc_bytes),
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "required": ["target"],
            "properties": {
                "target": {"type": "string", "description": l.text(60)},
                "mode": {"type": "string", "enum": ["fast", "thorough", "dry_run"], "description": l.text(40)},
                "limit": {"type": "integer", "minimum": 1, "maximum": 2000, "description": l.text(30)},
                "recursive": {"type": "boolean", "default": false},
                "items": {"type": "array", "description": l.text(30), "items": {
                    "type": "object", "additionalProperties": false, "required": ["key"],
                    "properties": {"key": {"type": "string"}, "value": {"type": ["string", "number", "null"]}}}}
            }
        }
    })
}

const CC_TOOLS: [&str; 24] = [
    "Task",
    "Bash",
    "Glob",
    "Grep",
    "ExitPlanMode",
    "Read",
    "Edit",
    "Write",
    "NotebookEdit",
    "WebFetch",
    "TodoWrite",
    "WebSearch",
    "BashOutput",
    "KillShell",
    "SlashCommand",
    "Skill",
    "AskUserQuestion",
    "ListMcpResources",
    "ReadMcpResource",
    "mcp__ide__getDiagnostics",
    "mcp__ide__executeCode",
    "mcp__docs__search",
    "mcp__docs__fetch",
    "EnterPlanMode",
];

fn claude_code(stream: bool) -> Value {
    let mut l = Lorem::new(5);
    let user_id = json!({"device_id": l.hex(64), "account_uuid": "", "session_id": format!(
        "{}-{}-4{}-a{}-{}", l.hex(8), l.hex(4), l.hex(3), l.hex(3), l.hex(12))})
    .to_string();
    // Real first turns carry a few very long tool descriptions and many short ones.
    let tools: Vec<Value> =
        CC_TOOLS.iter().enumerate().map(|(i, n)| tool(&mut l, n, if i < 4 { 3500 } else { 900 })).collect();
    let mut v = json!({
        "model": "claude-opus-4-5",
        "max_tokens": 64000,
        "stream": stream,
        "system": [
            {"type": "text", "text": l.text(60)},
            {"type": "text", "text": l.text(400), "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "", "cache_control": {"type": "ephemeral"}}
        ],
        "tools": tools,
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": format!("<context>{}</context>", l.text(1500))},
                {"type": "text", "text": l.text(200), "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": l.text(300)}]},
            {"role": "system", "content": l.text(250)},
            {"role": "user", "content": [{"type": "text", "text": l.text(180)}]}
        ],
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": user_id}
    });
    pad_to(&mut v, 75 * 1024, &mut l, |v| &mut v["system"][2]["text"]);
    v
}

/// Grows the string at `slot` until the serialized body reaches `target` bytes.
fn pad_to(v: &mut Value, target: usize, l: &mut Lorem, slot: impl Fn(&mut Value) -> &mut Value) {
    let now = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(target);
    let current = slot(v).as_str().map(str::len).unwrap_or(0);
    if now < target {
        *slot(v) = Value::String(l.text(current + target - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: Profile, stream: bool) -> Value {
        serde_json::from_slice(&p.body(stream)).unwrap()
    }

    #[test]
    fn sizes_and_stream_flag() {
        for p in [Profile::Simple, Profile::MultiTurn, Profile::Large, Profile::Tools, Profile::ClaudeCode] {
            assert_eq!(parse(p, true)["stream"], true, "{p:?}");
            assert_eq!(parse(p, false)["stream"], false, "{p:?}");
            assert_eq!(p.body(true), p.body(true), "deterministic {p:?}");
        }
        assert_eq!(parse(Profile::MultiTurn, false)["messages"].as_array().unwrap().len(), 10);
        let large = Profile::Large.body(false).len();
        assert!((24 * 1024..25 * 1024).contains(&large), "{large}");
        let cc = Profile::ClaudeCode.body(true).len();
        assert!((75 * 1024..76 * 1024).contains(&cc), "{cc}");
    }

    #[test]
    fn claude_code_shape() {
        let v = parse(Profile::ClaudeCode, true);
        let system = v["system"].as_array().unwrap();
        assert_eq!(system.len(), 3);
        assert_eq!(system.iter().filter(|b| b.get("cache_control").is_some()).count(), 2);
        assert_eq!(v["tools"].as_array().unwrap().len(), 24);
        assert!(v["messages"].as_array().unwrap().iter().skip(1).any(|m| m["role"] == "system"));
        assert_eq!(v["thinking"]["type"], "adaptive");
        assert_eq!(v["max_tokens"], 64000);
        assert_eq!(v["output_config"]["effort"], "high");
        assert!(v["context_management"]["edits"].is_array());
        let uid: Value = serde_json::from_str(v["metadata"]["user_id"].as_str().unwrap()).unwrap();
        assert_eq!(uid["device_id"].as_str().unwrap().len(), 64);
        assert_eq!(Profile::ClaudeCode.query(), Some("beta=true"));
    }

    #[test]
    fn tools_history_pairs_every_tool_use() {
        let v = parse(Profile::Tools, false);
        let blocks: Vec<&Value> =
            v["messages"].as_array().unwrap().iter().filter_map(|m| m["content"].as_array()).flatten().collect();
        let uses: Vec<&str> =
            blocks.iter().filter(|b| b["type"] == "tool_use").map(|b| b["id"].as_str().unwrap()).collect();
        let results: Vec<&str> =
            blocks.iter().filter(|b| b["type"] == "tool_result").map(|b| b["tool_use_id"].as_str().unwrap()).collect();
        assert_eq!(uses, results);
        assert_eq!(uses.len(), 3);
    }
}
