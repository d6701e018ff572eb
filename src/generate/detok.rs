//! Incremental detokenisation: text deltas as tokens arrive, never half a UTF-8
//! character, and, concatenated, exactly what decoding all the generated tokens
//! at once gives. Each step decodes the generated tokens up to the last one whose
//! text cannot change any more and emits what follows the text already out: a
//! trailing run of byte-fallback pieces (`<0xE3>`) is held, since the decoder turns
//! a whole run into replacement characters when any byte of it is invalid, and so
//! is text ending in an incomplete character. Nothing emitted is taken back.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// The decoding state of one sequence's generated tokens.
#[derive(Clone, Debug, Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    /// Bytes of text emitted.
    emitted: usize,
}

impl Detokenizer {
    /// Nothing generated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the text it completes (possibly empty while a
    /// character is still incomplete).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        // Skipped special tokens join the byte runs around them: look past them.
        for &last in self.ids.iter().rev() {
            if is_byte_piece(tok, last) {
                return Ok(String::new());
            }
            if !tok.decode(&[last], true)?.is_empty() {
                break;
            }
        }
        let full = tok.decode(&self.ids, true)?;
        if full.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        Ok(self.take(&full))
    }

    /// Text still held back at the end of the sequence (an incomplete character
    /// comes out as the replacement character, as a full decode gives it).
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let full = tok.decode(&self.ids, true)?;
        Ok(self.take(&full))
    }

    /// The text of `full` after what was emitted.
    fn take(&mut self, full: &str) -> String {
        match full.get(self.emitted..) {
            Some(delta) => {
                self.emitted = full.len();
                delta.to_string()
            }
            None => String::new(),
        }
    }
}

/// Whether a token is a byte-fallback piece (`<0x00>` to `<0xFF>`).
fn is_byte_piece(tok: &Tokenizer, id: u32) -> bool {
    tok.id_to_token(id).is_some_and(|t| {
        let b = t.as_bytes();
        b.len() == 6
            && t.starts_with("<0x")
            && t.ends_with('>')
            && b[3..5].iter().all(u8::is_ascii_hexdigit)
    })
}
