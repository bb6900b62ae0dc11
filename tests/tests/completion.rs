//! Shell completion: the script `rouse completion SHELL` prints completes commands and flags
//! in a real bash.

use std::process::Command;

use rouse_tests::rouse_binary;

/// What bash offers after `words` with the completion script loaded.
fn bash_completes(words: &str) -> String {
    let script = format!(
        "source <('{}' completion bash); COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
         COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _rouse rouse; echo \"${{COMPREPLY[@]}}\"",
        rouse_binary().display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().expect("bash runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completes_commands_and_deploy_flags() {
    assert!(bash_completes("rouse dep").split_whitespace().any(|w| w == "deploy"));
    let flags = bash_completes("rouse deploy --lo");
    assert!(flags.contains("--lock-to-digest"), "{flags}");
    for shell in ["zsh", "fish"] {
        let out = Command::new(rouse_binary())
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("deploy"));
    }
    let bad = Command::new(rouse_binary())
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}
