//! Chat templates of a model folder (`chat_template.jinja`, or `chat_template` in
//! `tokenizer_config.json`), rendered with MiniJinja configured as transformers
//! configures Jinja for `apply_chat_template`: `trim_blocks`, `lstrip_blocks`, no
//! kept trailing newline, loop controls, Python string methods, `raise_exception`
//! and `tojson`, with the folder's special tokens (`bos_token`, `eos_token`, ...) in
//! scope.

use std::path::{Path, PathBuf};

use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;
use serde_json::Value;

use super::folder::read_json;
use crate::error::{Error, Result};

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, or a template's own roles (`query`, `document`).
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message of `role` saying `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// A folder's chat template, compiled.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Special-token strings of `tokenizer_config.json` (`bos_token`, ...).
    specials: serde_json::Map<String, Value>,
    source: PathBuf,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .finish()
    }
}

/// A token of `tokenizer_config.json`: a string, or an `AddedToken` object.
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl ChatTemplate {
    /// The template of `dir`: `chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template` (a string, or named templates of which `default` is used);
    /// `None` when the folder has none.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>> {
        let tok_cfg_path = dir.join("tokenizer_config.json");
        let tok_cfg: Value = if tok_cfg_path.is_file() {
            read_json(&tok_cfg_path)?
        } else {
            Value::Null
        };
        let file = dir.join("chat_template.jinja");
        let (source, text) = if file.is_file() {
            let text = std::fs::read_to_string(&file).map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?;
            (file, text)
        } else {
            let text = match tok_cfg.get("chat_template") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(named)) => match named.iter().find(|t| t["name"] == "default") {
                    Some(t) => t["template"].as_str().unwrap_or_default().to_string(),
                    None => {
                        return Err(Error::Config {
                            path: tok_cfg_path,
                            reason: "chat_template lists named templates but none is `default`"
                                .into(),
                        })
                    }
                },
                _ => return Ok(None),
            };
            (tok_cfg_path.clone(), text)
        };
        let mut specials = serde_json::Map::new();
        if let Value::Object(o) = &tok_cfg {
            for (k, v) in o {
                // The special tokens transformers hands templates.
                const NAMES: [&str; 7] = [
                    "bos_token",
                    "eos_token",
                    "unk_token",
                    "sep_token",
                    "pad_token",
                    "cls_token",
                    "mask_token",
                ];
                if NAMES.contains(&k.as_str()) {
                    if let Some(t) = token_text(v) {
                        specials.insert(k.clone(), Value::String(t));
                    }
                }
            }
        }
        Self::new(&text, specials, source).map(Some)
    }

    /// Compiles `text`.
    pub fn new(
        text: &str,
        specials: serde_json::Map<String, Value>,
        source: PathBuf,
    ) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Unsupported(format!("chat template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", text.to_string())
            .map_err(|e| Error::Config {
                path: source.clone(),
                reason: format!("chat template does not compile: {e}"),
            })?;
        Ok(Self {
            env,
            specials,
            source,
        })
    }

    /// Renders `messages`; with `add_generation_prompt`, the opening of the
    /// assistant's reply is appended where the template does that.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Unsupported(format!("chat template: {e}")))?;
        let ctx = context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            ..minijinja::Value::from(minijinja::value::Serde(&self.specials))
        };
        tmpl.render(ctx).map_err(|e| {
            Error::InvalidInput(format!(
                "the chat template ({}) refused the messages: {e}",
                self.source.display()
            ))
        })
    }
}
