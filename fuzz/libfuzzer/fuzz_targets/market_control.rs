#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mehr_fuzz_targets::market::market_control(data));
