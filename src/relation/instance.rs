//! A relation instance: a sentence with its head entity marked `[[..]]` and its tail `<<..>>`
//! (the data's and the page's format), and the text our encoder reads. T5's vocabulary has no
//! `<`, so the encoder sees the punctuation markers of Zhou & Chen (2021) instead: `@ head @`
//! and `# tail #` (**ours**; ERDA's BiLSTM read the sentence without markers).

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkError {
    #[error("no head entity marked [[...]]")]
    NoHead,
    #[error("no tail entity marked <<...>>")]
    NoTail,
    #[error("the {0} marker is opened but never closed")]
    Unclosed(&'static str),
    #[error("more than one {0} is marked")]
    Twice(&'static str),
    #[error("the head [[...]] and tail <<...>> markers overlap")]
    Overlap,
    #[error("the {0} entity is empty")]
    Empty(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// What the encoder reads, with `@ .. @` and `# .. #` markers.
    pub text: String,
    /// Byte ranges in `text` of the marked head and tail, markers included (the states pooled).
    pub head: Range<usize>,
    pub tail: Range<usize>,
    pub head_text: String,
    pub tail_text: String,
}

/// (open, close) byte range of one marked span in `line`.
fn span(
    line: &str,
    open: &str,
    close: &str,
    what: &'static str,
) -> Result<Option<Range<usize>>, MarkError> {
    let Some(s) = line.find(open) else {
        return Ok(None);
    };
    let Some(e) = line[s + open.len()..]
        .find(close)
        .map(|i| s + open.len() + i)
    else {
        return Err(MarkError::Unclosed(what));
    };
    if line[e + close.len()..].contains(open) {
        return Err(MarkError::Twice(what));
    }
    Ok(Some(s..e + close.len()))
}

impl Instance {
    pub fn parse(line: &str) -> Result<Self, MarkError> {
        let h = span(line, "[[", "]]", "head [[...]]")?.ok_or(MarkError::NoHead)?;
        let t = span(line, "<<", ">>", "tail <<...>>")?.ok_or(MarkError::NoTail)?;
        if h.start < t.end && t.start < h.end {
            return Err(MarkError::Overlap);
        }
        let inner = |r: &Range<usize>| line[r.start + 2..r.end - 2].trim().to_string();
        let (head_text, tail_text) = (inner(&h), inner(&t));
        if head_text.is_empty() {
            return Err(MarkError::Empty("head"));
        }
        if tail_text.is_empty() {
            return Err(MarkError::Empty("tail"));
        }
        let mut spans = [(h, "@", &head_text, true), (t, "#", &tail_text, false)];
        spans.sort_by_key(|s| s.0.start);
        let mut text = String::new();
        let (mut head, mut tail) = (0..0, 0..0);
        let mut at = 0;
        for (r, m, entity, is_head) in spans {
            text.push_str(&line[at..r.start]);
            let start = text.len();
            text.push_str(&format!("{m} {entity} {m}"));
            if is_head {
                head = start..text.len();
            } else {
                tail = start..text.len();
            }
            at = r.end;
        }
        text.push_str(&line[at..]);
        Ok(Self {
            text,
            head,
            tail,
            head_text,
            tail_text,
        })
    }

    /// A relation's name as a pseudo-sentence (ERDA's prototypes start from the encoded name).
    pub fn for_relation(name: &str) -> Self {
        Self::parse(&format!("[[subject]] {name} <<object>>"))
            .expect("a well-formed pseudo-sentence")
    }

    /// The entity pair, case-folded: what ERDA's retrieval matches first.
    pub fn pair(&self) -> (String, String) {
        (self.head_text.to_lowercase(), self.tail_text.to_lowercase())
    }

    /// Indices of the tokens (byte ranges from the tokenizer) that overlap the head and the tail.
    pub fn positions(&self, offsets: &[(usize, usize)]) -> (Vec<usize>, Vec<usize>) {
        let within = |r: &Range<usize>| -> Vec<usize> {
            offsets
                .iter()
                .enumerate()
                .filter(|(_, (s, e))| e > s && *s < r.end && r.start < *e)
                .map(|(i, _)| i)
                .collect()
        };
        (within(&self.head), within(&self.tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_become_punctuation_and_spans_cover_them() {
        let i = Instance::parse("<<Wheeler, Texas>> is where [[Alan Bean]] was born.").unwrap();
        assert_eq!(
            i.text,
            "# Wheeler, Texas # is where @ Alan Bean @ was born."
        );
        assert_eq!(&i.text[i.head.clone()], "@ Alan Bean @");
        assert_eq!(&i.text[i.tail.clone()], "# Wheeler, Texas #");
        assert_eq!(i.pair(), ("alan bean".into(), "wheeler, texas".into()));
        // Tokens: "#"(0..1) " Wheeler"(1..9) ... ; offsets outside both spans are not taken.
        let offsets = [
            (0, 1),
            (1, 9),
            (19, 21),
            (28, 29),
            (29, 34),
            (40, 41),
            (41, 45),
            (0, 0),
        ];
        let (h, t) = i.positions(&offsets);
        assert_eq!(h, vec![3, 4, 5]);
        assert_eq!(t, vec![0, 1]);
    }

    #[test]
    fn bad_marks_are_named() {
        assert_eq!(Instance::parse("no marks"), Err(MarkError::NoHead));
        assert_eq!(Instance::parse("[[a]] only"), Err(MarkError::NoTail));
        assert_eq!(
            Instance::parse("[[a b <<c>>"),
            Err(MarkError::Unclosed("head [[...]]"))
        );
        assert_eq!(
            Instance::parse("[[a]] [[b]] <<c>>"),
            Err(MarkError::Twice("head [[...]]"))
        );
        assert_eq!(Instance::parse("[[a <<b]] c>>"), Err(MarkError::Overlap));
        assert_eq!(
            Instance::parse("[[ ]] <<c>>"),
            Err(MarkError::Empty("head"))
        );
        assert!(Instance::parse("[[a]] x <<b>>.").is_ok());
    }
}
