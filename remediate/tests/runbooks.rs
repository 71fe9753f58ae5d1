//! Loading runbook directories: the example runbooks of the repository are
//! valid, and every bad fixture fails with exactly the expected messages.

use std::path::{Path, PathBuf};

use remediate::RunbookSet;

/// Loads one fixture file and returns the full error text.
fn errors_of(name: &str) -> String {
    // Cargo runs integration tests from the package root, so this relative
    // path is also what the messages show.
    let path = PathBuf::from("tests/fixtures/bad").join(name);
    match RunbookSet::load_files(&[path]) {
        Ok(set) => panic!("{name} loaded without errors: {}", set.summary()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_field_is_named_at_its_own_line() {
    assert_eq!(
        errors_of("unknown_field.yaml"),
        "tests/fixtures/bad/unknown_field.yaml:10:7: rules[0].when.sevrity: unknown field `sevrity`, \
         expected one of `signal`, `direction`, `for`, `severity`, `match`, `root_cause`, `alert`\n\
         tests/fixtures/bad/unknown_field.yaml:18:9: rules[1].then[0]: missing field `replicas`\n\
         tests/fixtures/bad/unknown_field.yaml:20:9: rules[1].then[0].replica: unknown field `replica`, \
         expected one of `target`, `replicas`, `timeout`, `dry_run`"
    );
}

#[test]
fn wrong_type_inside_an_action_names_the_field() {
    assert_eq!(
        errors_of("wrong_type.yaml"),
        "tests/fixtures/bad/wrong_type.yaml:12:9: rules[0].then[0].replicas: invalid type: string \"many\", expected u32"
    );
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    assert_eq!(
        errors_of("yaml_syntax.yaml"),
        "tests/fixtures/bad/yaml_syntax.yaml:7:9: parsing yaml: while parsing a flow mapping, \
         did not find expected ',' or '}' (a YAML syntax error stops the reader: the rest of this \
         file was not checked; other files were)"
    );
}

#[test]
fn bad_duration_says_what_is_wrong() {
    assert_eq!(
        errors_of("bad_duration.yaml"),
        "tests/fixtures/bad/bad_duration.yaml:10:7: rules[0].when.for: invalid duration \"5 minutes\": \
         missing unit after number (use ms, s, m, h or d)"
    );
}

#[test]
fn undefined_signal_lists_the_defined_ones() {
    assert_eq!(
        errors_of("undefined_signal.yaml"),
        "tests/fixtures/bad/undefined_signal.yaml:10:7: rules[0].when.signal: undefined signal \"latency_p99\" \
         (defined: http_error_ratio, http_request_rate)"
    );
}

#[test]
fn unknown_action_names_the_choices() {
    assert_eq!(
        errors_of("unknown_action.yaml"),
        "tests/fixtures/bad/unknown_action.yaml:10:9: rules[0].then[0].action: unknown variant `restrat`, \
         expected one of `restart`, `scale`, `rollback`, `reroute`, `exec`, `webhook`, `agent`, `docker`"
    );
}

#[test]
fn shell_command_lines_and_templated_programs_are_rejected() {
    assert_eq!(
        errors_of("unsafe_exec.yaml"),
        "tests/fixtures/bad/unsafe_exec.yaml:11:9: rules[0].then[0].argv: shell command lines are not allowed: \
         exec runs argv directly, write the program and each argument as its own item\n\
         tests/fixtures/bad/unsafe_exec.yaml:13:16: rules[0].then[1].argv[0]: the program must be fixed text, \
         not a template"
    );
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    // A detector bound, a template variable and a duration the parser
    // rejects, in three different elements: three lines, in line order.
    assert_eq!(
        errors_of("three_problems.yaml"),
        "tests/fixtures/bad/three_problems.yaml:5:7: signals[0].detector.threshold: must be within [0, 1], got 1.5\n\
         tests/fixtures/bad/three_problems.yaml:14:9: rules[0].then[0].target: unknown template variable \"svc\" \
         (known: service, instance, signal, rule, label.NAME)\n\
         tests/fixtures/bad/three_problems.yaml:19:7: rules[1].guards.cooldown: invalid duration \"soon\": \
         expected a number and a unit (ms, s, m, h or d), like \"90s\" or \"1h30m\""
    );
}

#[test]
fn problems_across_files_of_a_directory() {
    let err = RunbookSet::load_dir("tests/fixtures/dup").unwrap_err();
    assert_eq!(
        err.to_string(),
        "tests/fixtures/dup/b.yml:2:5: signals[0].name: duplicate signal name \"http_request_rate\" \
         (first defined at tests/fixtures/dup/a.yaml:2)\n\
         tests/fixtures/dup/b.yml:5:5: rules[0].name: duplicate rule name \"scale-out\" \
         (first defined at tests/fixtures/dup/a.yaml:5)\n\
         tests/fixtures/dup/b.yml:11:9: rules[0].then[0].replicas: must be at least 1, got 0"
    );
    assert_eq!(err.errors()[0].line, Some(2));
    assert_eq!(err.errors()[0].column, Some(5));
    assert_eq!(err.errors()[0].field, "signals[0].name");
}

#[test]
fn missing_and_empty_directories_are_errors() {
    let err = RunbookSet::load_dir("tests/fixtures/does-not-exist")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tests/fixtures/does-not-exist: reading runbook directory: "),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let err = RunbookSet::load_dir(empty.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: reading runbook directory: no *.yaml or *.yml files",
            empty.path().display()
        )
    );
}

#[test]
fn example_runbooks_load_and_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
    let set = match RunbookSet::load_dir(&dir) {
        Ok(set) => set,
        Err(e) => panic!("example runbooks have problems:\n{e}"),
    };
    assert!(set.files().len() >= 2, "{}", set.summary());
    let signals: Vec<&str> = set.signals().iter().map(|s| s.name.as_str()).collect();
    for name in [
        "http_request_rate",
        "http_error_ratio",
        "http_latency_p99_seconds",
        "process_memory_bytes",
    ] {
        assert!(signals.contains(&name), "{name} missing from {signals:?}");
    }
    assert_eq!(set.summary(), "3 files, 4 signals, 6 rules");
}

#[test]
fn schema_describes_the_file_format() {
    let schema = remediate::json_schema();
    let text = serde_json::to_string(&schema).unwrap();
    assert_eq!(schema["title"], "RunbookFile");
    assert_eq!(schema["additionalProperties"], false);
    for needle in [
        "\"signals\"",
        "\"rules\"",
        "critical_score",
        "recovered_when",
        "value_below",
        "\"webhook\"",
        "^([0-9]+(ms|s|m|h|d))+$",
    ] {
        assert!(text.contains(needle), "schema lacks {needle}");
    }
    // Steps reject unknown fields in the schema as the loader does.
    for variant in schema["definitions"]["Action"]["oneOf"].as_array().unwrap() {
        assert_eq!(variant["additionalProperties"], false, "{variant}");
    }
    // Field docs flow into the schema.
    assert!(text.contains("How long an excursion must have lasted before the rule acts"));
}

#[test]
fn a_custom_yaml_tag_is_an_error_with_its_line() {
    // Issue 10, 9: `!custom` was silently ignored.
    let text = "signals:\n  - name: up\n    query: !custom up\n";
    let e = RunbookSet::from_sources(&[(PathBuf::from("t.yaml"), text.to_owned())])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "t.yaml:3:5: signals[0].query: unsupported yaml tag \"!custom\": heal reads plain YAML (tags other than the core schema's are not supported)"
    );
}

#[test]
fn a_url_variable_that_cannot_be_placed_is_reported_by_the_check() {
    let text = "signals:\n  - name: up\n    query: up\nrules:\n  - name: r\n    when: {signal: up}\n    then:\n      - action: webhook\n        url: \"${env:HOOK}{{instance}}\"\n";
    let e = RunbookSet::from_sources(&[(PathBuf::from("u.yaml"), text.to_owned())])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "u.yaml:9:9: rules[0].then[0].url: {{instance}} follows an ${env:...} reference without a `/` between them: where a label value would land in the URL cannot be known; put a literal `/` before it"
    );
}
