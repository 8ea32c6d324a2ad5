//! Few-shot examples pasted by a person (the page and the CLI share this). One example per line
//! as `input<TAB>label`, `input => label` or JSONL `{"input": ..., "target": ...}`, or CSV with a
//! header naming the columns; the format is detected from the first non-empty line. Every
//! rejected line is reported with its number and the reason; the valid lines are kept.

use crate::tasks::Example;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PasteFormat {
    Tab,
    Arrow,
    Jsonl,
    Csv,
}

impl PasteFormat {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Tab => "input<TAB>label",
            Self::Arrow => "input => label",
            Self::Jsonl => "JSON lines",
            Self::Csv => "CSV with a header",
        }
    }
}

/// Why one line was rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum LineProblem {
    #[error("no separator: expected `input<TAB>label` like the first line")]
    NoTab,
    #[error("no separator: expected `input => label` like the first line")]
    NoArrow,
    #[error("the input is empty")]
    EmptyInput,
    #[error("the label is empty")]
    EmptyLabel,
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("field {0:?} is missing or not a string")]
    MissingField(String),
    #[error("CSV: {0}")]
    Csv(String),
    #[error("duplicate of line {first}")]
    Duplicate { first: usize },
    #[error("the same input as line {first} with another label ({other:?})")]
    Conflict { first: usize, other: String },
    #[error("too long for the model: {tokens} tokens, at most {max}")]
    TooLong { tokens: usize, max: usize },
}

/// A rejected line and why; `P` is the paste's kind of problem (this parser's by default, the
/// relation stream's in `relation::paste`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineError<P = LineProblem> {
    /// 1-based line number in the pasted text.
    pub line: usize,
    pub problem: P,
}

impl<P: std::fmt::Display> std::fmt::Display for LineError<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// A problem of the whole set rather than of one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum SetProblem {
    #[error("nothing pasted")]
    Empty,
    #[error(
        "the first line has no separator: use `input<TAB>label`, `input => label`, JSON lines or CSV with a header (input,label)"
    )]
    UnknownFormat,
    #[error(
        "CSV header {0:?} names no input column (input, text, sentence, question) and label column (label, target, output, answer)"
    )]
    CsvHeader(String),
    #[error("no valid example")]
    NoValidExample,
    #[error("every example has the label {0:?}: a classifier needs at least two labels")]
    OneLabelOnly(String),
    #[error(
        "the paste is {megabytes:.1} MB in {lines} lines; the page reads at most {max_megabytes:.1} MB at a time (a few-shot set is a few hundred lines): shorten it"
    )]
    TooLarge {
        megabytes: f64,
        lines: usize,
        max_megabytes: f64,
    },
}

/// The most a paste may hold. A few-shot set is a few hundred lines; parsing megabytes and
/// counting their tokens on every keystroke would freeze the page, and localStorage holds about
/// 5 MB. A bigger paste is refused whole, with its size, never cut silently.
pub const MAX_PASTE_BYTES: usize = 1 << 20;

/// Refuses a paste over `MAX_PASTE_BYTES`.
pub fn check_size(text: &str) -> Result<(), SetProblem> {
    if text.len() <= MAX_PASTE_BYTES {
        return Ok(());
    }
    Err(SetProblem::TooLarge {
        megabytes: text.len() as f64 / 1e6,
        lines: text.lines().count(),
        max_megabytes: MAX_PASTE_BYTES as f64 / 1e6,
    })
}

/// The parsed paste: valid examples, rejected lines, and the label set and verbalizer derived
/// from the labels (first-seen order; each label verbalised as itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pasted {
    pub format: Option<PasteFormat>,
    pub examples: Vec<Example>,
    /// Line number of each example in `examples`.
    pub lines: Vec<usize>,
    pub rejected: Vec<LineError>,
    pub problems: Vec<SetProblem>,
    pub labels: Vec<String>,
    pub verbalizer: BTreeMap<String, String>,
}

/// Limits the parser checks: the token budget of one input, and how to count tokens (the
/// model's tokenizer; None skips the check, e.g. before the tokenizer is loaded).
pub struct Limits<'a> {
    pub max_input_tokens: usize,
    pub count_tokens: Option<&'a dyn Fn(&str) -> usize>,
}

impl Default for Limits<'_> {
    fn default() -> Self {
        Self {
            max_input_tokens: 512,
            count_tokens: None,
        }
    }
}

/// A line (1-based) and what it holds: (input, label) or why not.
type Candidate = (usize, Result<(String, String), LineProblem>);

const INPUT_COLUMNS: [&str; 4] = ["input", "text", "sentence", "question"];
const LABEL_COLUMNS: [&str; 4] = ["label", "target", "output", "answer"];

fn detect(first: &str) -> Option<PasteFormat> {
    let t = first.trim_start();
    if t.starts_with('{') {
        Some(PasteFormat::Jsonl)
    } else if first.contains('\t') {
        Some(PasteFormat::Tab)
    } else if first.contains("=>") {
        Some(PasteFormat::Arrow)
    } else if csv_columns(first).is_some() {
        Some(PasteFormat::Csv)
    } else {
        None
    }
}

/// (input column, label column) of a CSV header line.
fn csv_columns(header: &str) -> Option<(usize, usize)> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(header.as_bytes());
    let rec = r.records().next()?.ok()?;
    let names: Vec<String> = rec.iter().map(|s| s.trim().to_lowercase()).collect();
    let find = |cands: &[&str]| cands.iter().find_map(|c| names.iter().position(|n| n == c));
    Some((find(&INPUT_COLUMNS)?, find(&LABEL_COLUMNS)?))
}

/// Parses pasted examples; never panics, whatever the bytes.
pub fn parse(text: &str, limits: &Limits) -> Pasted {
    let mut out = Pasted {
        format: None,
        examples: Vec::new(),
        lines: Vec::new(),
        rejected: Vec::new(),
        problems: Vec::new(),
        labels: Vec::new(),
        verbalizer: BTreeMap::new(),
    };
    if let Err(p) = check_size(text) {
        out.problems.push(p);
        return out;
    }
    let Some((first_no, first)) = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty())
    else {
        out.problems.push(SetProblem::Empty);
        return out;
    };
    let Some(format) = detect(first) else {
        out.problems.push(SetProblem::UnknownFormat);
        return out;
    };
    out.format = Some(format);
    let candidates: Vec<Candidate> = match format {
        PasteFormat::Csv => match csv_columns(first) {
            Some(cols) => csv_rows(text, first_no, cols),
            None => {
                out.problems.push(SetProblem::CsvHeader(first.to_string()));
                return out;
            }
        },
        _ => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, split_line(l, format)))
            .collect(),
    };
    let mut seen: HashMap<String, (usize, String)> = HashMap::new();
    for (line, cand) in candidates {
        let checked = cand.and_then(|(input, label)| {
            let (input, label) = (input.trim().to_string(), label.trim().to_string());
            if input.is_empty() {
                return Err(LineProblem::EmptyInput);
            }
            if label.is_empty() {
                return Err(LineProblem::EmptyLabel);
            }
            if let Some((first, other)) = seen.get(&input) {
                return Err(if *other == label {
                    LineProblem::Duplicate { first: *first }
                } else {
                    LineProblem::Conflict {
                        first: *first,
                        other: other.clone(),
                    }
                });
            }
            if let Some(count) = limits.count_tokens {
                let tokens = count(&input);
                if tokens > limits.max_input_tokens {
                    return Err(LineProblem::TooLong {
                        tokens,
                        max: limits.max_input_tokens,
                    });
                }
            }
            Ok((input, label))
        });
        match checked {
            Ok((input, label)) => {
                seen.insert(input.clone(), (line, label.clone()));
                if !out.labels.contains(&label) {
                    out.labels.push(label.clone());
                    out.verbalizer.insert(label.clone(), label.clone());
                }
                out.examples.push(Example::new(input, label));
                out.lines.push(line);
            }
            Err(problem) => out.rejected.push(LineError { line, problem }),
        }
    }
    match out.labels.as_slice() {
        [] => out.problems.push(SetProblem::NoValidExample),
        [only] => out.problems.push(SetProblem::OneLabelOnly(only.clone())),
        _ => {}
    }
    out
}

fn split_line(line: &str, format: PasteFormat) -> Result<(String, String), LineProblem> {
    match format {
        PasteFormat::Tab => line
            .rsplit_once('\t')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or(LineProblem::NoTab),
        PasteFormat::Arrow => line
            .rsplit_once("=>")
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or(LineProblem::NoArrow),
        PasteFormat::Jsonl => {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| LineProblem::Json(e.to_string()))?;
            let field = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| v.get(n).and_then(|x| x.as_str()).map(String::from))
            };
            let input = field(&["input"]).ok_or(LineProblem::MissingField("input".into()))?;
            let target =
                field(&["target", "label"]).ok_or(LineProblem::MissingField("target".into()))?;
            Ok((input, target))
        }
        PasteFormat::Csv => unreachable!("CSV rows are read by csv_rows"),
    }
}

/// CSV records after the header, each with its 1-based starting line (quoted fields may span
/// lines).
fn csv_rows(text: &str, header_index: usize, (ci, cl): (usize, usize)) -> Vec<Candidate> {
    let body_start: usize = text
        .split_inclusive('\n')
        .take(header_index + 1)
        .map(str::len)
        .sum();
    let body = &text[body_start.min(text.len())..];
    // Records end at '\n' only, as `str::lines` counts the paste's lines: csv's default also
    // ends one at a bare '\r' without counting a line, which gave two records one line number
    // (found by fuzzing). The '\r' of a CRLF ending is trimmed off the last field below.
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(body.as_bytes());
    let mut rows = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        let line = header_index + 2 + r.position().line() as usize - 1;
        match r.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                if rec.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                let get = |i: usize, name: &str| {
                    rec.get(i)
                        .map(|f| f.strip_suffix('\r').unwrap_or(f).to_string())
                        .ok_or_else(|| LineProblem::MissingField(name.into()))
                };
                rows.push((
                    line,
                    get(ci, "input").and_then(|a| Ok((a, get(cl, "label")?))),
                ));
            }
            Err(e) => {
                rows.push((line, Err(LineProblem::Csv(e.to_string()))));
                // A broken record (e.g. invalid UTF-8) does not stop the rest.
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRLF endings parse as LF ones; a bare '\r' inside a record neither ends it nor shifts
    /// the line numbers (fuzzing found a kept and a rejected line sharing one number).
    #[test]
    fn csv_lines_end_at_newlines_only() {
        let crlf = parse(
            "text,label\r\nhello,pos\r\n\"bye\",neg\r\n",
            &Limits::default(),
        );
        assert_eq!(crlf.lines, [2, 3]);
        assert_eq!(crlf.labels, ["pos", "neg"]);
        assert_eq!(crlf.examples[1].input, "bye");
        let bare = parse("text,label\na\rb,pos\nc,neg\nd\n", &Limits::default());
        assert_eq!(bare.lines, [2, 3]);
        assert_eq!(bare.rejected.len(), 1);
        assert_eq!(bare.rejected[0].line, 4);
    }

    #[test]
    fn a_paste_over_the_size_limit_is_refused_whole_with_its_size() {
        let line = "a fine input\tpositive\n";
        let big = line.repeat(MAX_PASTE_BYTES / line.len() + 1);
        let p = parse(&big, &Limits::default());
        assert!(p.examples.is_empty());
        let msg = p.problems[0].to_string();
        assert!(msg.contains("1.0 MB in 47663 lines"), "{msg}");
        let fits = line.repeat(MAX_PASTE_BYTES / line.len() - 1);
        let problems = parse(&fits, &Limits::default()).problems;
        assert!(
            !problems
                .iter()
                .any(|p| matches!(p, SetProblem::TooLarge { .. })),
            "{problems:?}"
        );
    }

    fn p(text: &str) -> Pasted {
        parse(text, &Limits::default())
    }

    #[test]
    fn tab_format() {
        let r = p("great movie\tpositive\n\nawful plot\tnegative\n");
        assert_eq!(r.format, Some(PasteFormat::Tab));
        assert_eq!(r.examples.len(), 2);
        assert_eq!(r.lines, [1, 3]);
        assert_eq!(r.labels, ["positive", "negative"]);
        assert!(r.problems.is_empty() && r.rejected.is_empty());
    }

    #[test]
    fn arrow_format_splits_at_the_last_arrow() {
        let r = p("a => b => yes\nc => no");
        assert_eq!(r.format, Some(PasteFormat::Arrow));
        assert_eq!(r.examples[0], Example::new("a => b", "yes"));
    }

    #[test]
    fn jsonl_format_accepts_target_or_label() {
        let r = p(
            "{\"input\": \"x\", \"target\": \"a\"}\n{\"input\": \"y\", \"label\": \"b\"}\n{\"input\": \"z\"}\n{oops",
        );
        assert_eq!(r.format, Some(PasteFormat::Jsonl));
        assert_eq!(r.examples.len(), 2);
        assert_eq!(r.rejected[0].line, 3);
        assert_eq!(
            r.rejected[0].problem,
            LineProblem::MissingField("target".into())
        );
        assert_eq!(r.rejected[1].line, 4);
        assert!(matches!(r.rejected[1].problem, LineProblem::Json(_)));
    }

    #[test]
    fn csv_with_header_quotes_and_multiline_fields() {
        let r = p(
            "id,Text,label\n1,\"hello, world\",greeting\n2,\"two\nlines\",other\n3,,other\n4,short\n",
        );
        assert_eq!(r.format, Some(PasteFormat::Csv));
        assert_eq!(r.examples[0], Example::new("hello, world", "greeting"));
        assert_eq!(r.examples[1].input, "two\nlines");
        assert_eq!(r.lines, [2, 3]);
        assert_eq!(
            r.rejected,
            [
                LineError {
                    line: 5,
                    problem: LineProblem::EmptyInput
                },
                LineError {
                    line: 6,
                    problem: LineProblem::MissingField("label".into())
                },
            ]
        );
    }

    #[test]
    fn csv_header_without_known_columns_is_not_csv() {
        let r = p("foo,bar\n1,2");
        assert_eq!(r.problems, [SetProblem::UnknownFormat]);
    }

    #[test]
    fn every_line_error_names_its_line() {
        let text = "good\tyes\nno label here\n\tno\nempty label\t\ngood\tyes\ngood\tno\nfine\tno";
        let r = p(text);
        let got: Vec<(usize, LineProblem)> = r
            .rejected
            .iter()
            .map(|e| (e.line, e.problem.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (2, LineProblem::NoTab),
                (3, LineProblem::EmptyInput),
                (4, LineProblem::EmptyLabel),
                (5, LineProblem::Duplicate { first: 1 }),
                (
                    6,
                    LineProblem::Conflict {
                        first: 1,
                        other: "yes".into()
                    }
                ),
            ]
        );
        assert_eq!(r.examples.len(), 2);
        assert_eq!(
            r.rejected[0].to_string(),
            "line 2: no separator: expected `input<TAB>label` like the first line"
        );
    }

    #[test]
    fn too_long_inputs_report_their_token_count() {
        let count = |s: &str| s.split_whitespace().count();
        let limits = Limits {
            max_input_tokens: 3,
            count_tokens: Some(&count),
        };
        let r = parse("a b c d\tx\na b\ty", &limits);
        assert_eq!(
            r.rejected,
            [LineError {
                line: 1,
                problem: LineProblem::TooLong { tokens: 4, max: 3 }
            }]
        );
        assert_eq!(
            r.rejected[0].to_string(),
            "line 1: too long for the model: 4 tokens, at most 3"
        );
        assert_eq!(r.problems, [SetProblem::OneLabelOnly("y".into())]);
    }

    #[test]
    fn set_problems() {
        assert_eq!(p("  \n\n").problems, [SetProblem::Empty]);
        assert_eq!(p("just text").problems, [SetProblem::UnknownFormat]);
        assert_eq!(
            p("a\tx\nb\tx").problems,
            [SetProblem::OneLabelOnly("x".into())]
        );
        assert_eq!(p("\tx\n\ty").problems, [SetProblem::NoValidExample]);
    }

    #[test]
    fn windows_line_endings() {
        let r = p("a\tyes\r\nb\tno\r\n");
        assert_eq!(r.examples[1], Example::new("b", "no"));
    }
}
