//! Regression (issue 15): with `RUST_BACKTRACE=1`, the message of an ordinary bad-file error
//! carried candle's whole backtrace. Its own binary: the variable must be set before anything
//! captures a backtrace.

mod common;

use ralmspec_assets::Asset;
use ralmspec_lm::Lm;

#[test]
fn bad_file_errors_carry_no_backtrace() {
    // SAFETY: the only test of this binary, run before any other thread reads the environment.
    unsafe { std::env::set_var("RUST_BACKTRACE", "1") };
    let dir = std::env::temp_dir().join(format!("ralmspec-bt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = std::fs::read(common::model_path(Asset::SmolLm2)).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap();
    let message = match Lm::open(&cut) {
        Ok(_) => panic!("half a model loaded"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(message.contains("remaining in file"), "{message}");
    assert!(
        !message.contains('\n') && !message.contains("backtrace") && !message.contains(".rs:"),
        "a backtrace in the message:\n{message}"
    );
}
