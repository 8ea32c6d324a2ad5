//! The pasted-examples parser never panics, whatever it is given, and accounts for every
//! non-empty line: each is either an example or a reported rejection.
#![cfg(not(target_arch = "wasm32"))]

use metaprompt::lifelong::paste as sequence;
use metaprompt::text::examples::{Limits, PasteFormat, parse};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let count = |s: &str| s.len() / 3;
        let _ = parse(&text, &Limits { max_input_tokens: 20, count_tokens: Some(&count) });
    }

    #[test]
    fn structured_noise_never_panics(
        lines in proptest::collection::vec("[a-z\t=>{}\",: \\\\\r]{0,30}", 0..20),
        header in prop_oneof![Just(""), Just("input,label\n"), Just("text,target\n")],
    ) {
        let text = format!("{header}{}", lines.join("\n"));
        let _ = parse(&text, &Limits::default());
    }

    #[test]
    fn every_line_is_kept_or_reported(
        rows in proptest::collection::vec(("[a-z ]{0,12}", "[a-c]{0,2}"), 1..30),
    ) {
        let text: String = rows.iter().map(|(i, l)| format!("{i}\t{l}\n")).collect();
        let p = parse(&text, &Limits::default());
        // Whitespace-only lines are blank lines, skipped silently.
        let non_blank = text.lines().filter(|l| !l.trim().is_empty()).count();
        if non_blank > 0 {
            prop_assert_eq!(p.format, Some(PasteFormat::Tab));
        }
        prop_assert_eq!(p.examples.len() + p.rejected.len(), non_blank);
    }

    #[test]
    fn a_sequence_never_panics(
        lines in proptest::collection::vec("(# )?[a-z\t=>(){}\",: ]{0,24}", 0..24),
    ) {
        let p = sequence::parse(&lines.join("\n"), &Limits::default());
        prop_assert!(!p.tasks.is_empty() || !p.problems.is_empty());
    }

    #[test]
    fn every_line_of_a_sequence_is_kept_or_reported(
        blocks in proptest::collection::vec(
            proptest::collection::vec(("[a-z ]{0,10}", "[a-c]{0,2}"), 1..12), 1..5),
    ) {
        // Distinct, valid headers: every other line is an example or a reported rejection.
        let text: String = blocks
            .iter()
            .enumerate()
            .map(|(i, rows)| {
                let body: String = rows.iter().map(|(x, l)| format!("{x}\t{l}\n")).collect();
                format!("# task {i}\n{body}")
            })
            .collect();
        let p = sequence::parse(&text, &Limits::default());
        let non_blank = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("# "))
            .count();
        let kept: usize = p.tasks.iter().map(|t| t.examples.len()).sum();
        prop_assert_eq!(p.tasks.len(), blocks.len());
        prop_assert_eq!(kept + p.rejected.len(), non_blank);
        let lines: Vec<usize> = p.rejected.iter().map(|e| e.line).collect();
        prop_assert!(lines.iter().all(|&n| text.lines().nth(n - 1).is_some_and(|l| !l.starts_with("# "))));
    }
}
