//! Writes the fuzz targets' seed corpus, `fuzz/corpus/<target>/seed-*`: one valid input of each
//! kind the target reads, from which libFuzzer mutates (`scripts/fuzz.sh`). Our own small files
//! (a tiny random checkpoint, a 2 x 4 prompt, short pastes and records), committed.
//! `cargo run --example fuzz_seeds`

use metaprompt::compare::{ContenderLog, InitChoice, RunRecord, Settings, Split, Status};
use metaprompt::model::T5Config;
use metaprompt::model::tiny::random_checkpoint;
use metaprompt::prompt::tune::{TuneConfig, Tuner};
use metaprompt::prompt::{SoftPrompt, peft};
use metaprompt::tasks::Example;
use metaprompt::worker::protocol::encode;
use std::path::Path;

fn main() -> Result<(), String> {
    let out = Path::new("fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| -> Result<(), String> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{} ({} bytes)", path.display(), bytes.len());
        Ok(())
    };

    write(
        "paste",
        "tab",
        b"a joy to watch\tpositive\na waste of time\tnegative\nno separator\n",
    )?;
    write(
        "paste",
        "arrow",
        b"great film => positive\ndull => negative\ndull => negative\n",
    )?;
    write(
        "paste",
        "jsonl",
        br#"{"input": "loved it", "target": "yes"}
{"input": "hated it", "label": "no"}
{"input": 3}
"#,
    )?;
    write(
        "paste",
        "csv",
        b"text,label\n\"a, quoted\nline\",pos\nplain,neg\n,empty\n",
    )?;
    write(
        "paste",
        "sequence",
        b"# news\nstocks fell => business\nthe match => sport\n# tags (ner)\nI saw Paris => Paris [location]\n# sums (summarisation)\na long text => short\n# bad (poetry)\n",
    )?;
    write(
        "paste",
        "relations",
        b"# task 1\n[[Alan Turing]] was born in <<London>>.\tborn in\n[[Ada]] worked at <<Analytical Engine Co>>.\tworks for\n# pool\n[[Alan Turing]] lived in <<London>>.\n",
    )?;

    let tiny = T5Config::tiny();
    write("checkpoint", "tiny", &random_checkpoint(&tiny, 1))?;
    let prompt = SoftPrompt {
        len: 2,
        dim: 4,
        values: vec![0.5, -1.0, 2.0, 0.0, f32::MIN_POSITIVE, 3.5, -0.25, 1e-3],
    };
    write(
        "peft",
        "prompt",
        &peft::to_safetensors(&prompt).map_err(|e| e.to_string())?,
    )?;
    for (name, c) in [
        ("tiny", &tiny),
        ("flan-t5-small", &T5Config::flan_t5_small()),
    ] {
        write(
            "config",
            name,
            serde_json::to_string_pretty(c)
                .map_err(|e| e.to_string())?
                .as_bytes(),
        )?;
    }

    let ex = |i: &str, t: &str| Example {
        input: i.into(),
        target: t.into(),
        ..Example::default()
    };
    let mut run = RunRecord {
        id: 1,
        started: "2026-12-06T20:00:00Z".into(),
        settings: Settings::default(),
        labels: vec!["positive".into(), "negative".into()],
        split: Split {
            train: vec![ex("a joy", "positive"), ex("a bore", "negative")],
            heldout: vec![ex("fine", "positive")],
        },
        contenders: [
            ContenderLog::new(InitChoice::Random),
            ContenderLog::new(InitChoice::Labels),
        ],
        status: Status::Running,
        engine: "our CPU engine".into(),
    };
    run.contenders[0].losses.push((1, f32::NAN));
    run.contenders[0].prompt = Some(prompt.clone());
    write("record", "run.cbor", &encode(&run)?)?;
    write(
        "record",
        "run.json",
        serde_json::to_string(&run)
            .map_err(|e| e.to_string())?
            .as_bytes(),
    )?;
    let tuner = Tuner::new(prompt, &TuneConfig::default());
    let checkpoint = metaprompt::compare::RunCheckpoint {
        record: run,
        tuners: [tuner.state(), tuner.state()],
    };
    write("record", "checkpoint.cbor", &encode(&checkpoint)?)?;
    Ok(())
}
