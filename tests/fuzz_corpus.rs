//! The fuzz targets' smoke run in the test command (issue 29): every input committed under
//! `fuzz/corpus/<target>/` (the seeds, and any input a fuzzing run found and we fixed), whole and
//! cut at eight points, through the same `metaprompt::fuzzing` bodies libFuzzer runs
//! (`scripts/fuzz.sh`, nightly, not part of the test command).
#![cfg(not(target_arch = "wasm32"))]

use metaprompt::fuzzing::TARGETS;

#[test]
fn every_committed_fuzz_input_runs_clean() {
    for (name, body) in TARGETS {
        let dir = std::path::Path::new("fuzz/corpus").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no seeds", dir.display());
        let mut runs = 0;
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            for cut in 0..=8 {
                body(&bytes[..bytes.len() * cut / 8]);
                runs += 1;
            }
        }
        println!("fuzz target {name}: {} inputs, {runs} runs", files.len());
    }
}
