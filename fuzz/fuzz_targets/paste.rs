#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| metaprompt::fuzzing::paste(data));
