//! The README, the template and the code tell one story: every template parameter is in the
//! README; every parameter handed to the function as a variable is one the code reads; every
//! variable the code reads is in the README's configuration table.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path)
}

/// The template's parameter names (two-space names under `Parameters:`).
fn parameters(template: &str) -> Vec<String> {
    let section = template.split("\nParameters:\n").nth(1).expect("a Parameters section");
    let section = section.split("\n\n").next().expect("the section ends with a blank line");
    let name = Regex::new(r"(?m)^  ([A-Za-z0-9]+):$").expect("regex");
    name.captures_iter(section).map(|c| c[1].to_owned()).collect()
}

/// Variable → parameter, from the function's `Environment` (`VAR: !Ref Param`, or inside an
/// `!If` or `!Join`).
fn environment(template: &str) -> BTreeMap<String, String> {
    let line = Regex::new(r"(?m)^ {10}([A-Z][A-Z0-9_]+): .*?!Ref ([A-Za-z0-9]+)").expect("regex");
    line.captures_iter(template).map(|c| (c[1].to_owned(), c[2].to_owned())).collect()
}

/// The variables the code reads by name (AWS's own, set by Lambda, left out).
fn variables_read() -> BTreeSet<String> {
    let read_by = Regex::new(r#"\b(?:get|duration|base_url|var|patterns)\("([A-Z][A-Z0-9_]+)""#).expect("regex");
    let mut found = BTreeSet::new();
    for dir in ["src", "src/config"] {
        for entry in std::fs::read_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"))).expect(dir).flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                found.extend(read_by.captures_iter(&text).map(|c| c[1].to_owned()));
            }
        }
    }
    found.retain(|name| !name.starts_with("AWS_"));
    found
}

/// Names in backticks at the start of a row of a README table.
fn readme_table_variables(readme: &str) -> BTreeSet<String> {
    let row = Regex::new(r"(?m)^\| (`[A-Z][A-Z0-9_]+`(?: / `[A-Z][A-Z0-9_]+`)*) \|").expect("regex");
    let name = Regex::new(r"`([A-Z][A-Z0-9_]+)`").expect("regex");
    row.captures_iter(readme)
        .flat_map(|c| name.captures_iter(&c[1]).map(|n| n[1].to_owned()).collect::<Vec<_>>())
        .collect()
}

#[test]
fn every_template_parameter_is_in_the_readme() {
    let (template, readme) = (read("template.yaml"), read("README.md"));
    let parameters = parameters(&template);
    assert!(parameters.len() > 20, "the parameters were found: {parameters:?}");
    let missing: Vec<&String> = parameters.iter().filter(|p| !readme.contains(&format!("`{p}`"))).collect();
    assert!(missing.is_empty(), "template parameters the README never names: {missing:?}");
}

#[test]
fn every_parameter_handed_to_the_function_is_a_variable_the_code_reads() {
    let template = read("template.yaml");
    let read_by_code = variables_read();
    let parameters = parameters(&template);
    let environment = environment(&template);
    assert!(environment.len() > 10, "the function's environment was found: {environment:?}");
    for (variable, source) in &environment {
        let resource = !parameters.contains(source);
        assert!(
            read_by_code.contains(variable),
            "the template sets {variable} (from {}{source}) but the code never reads it",
            if resource { "resource " } else { "parameter " }
        );
    }
}

#[test]
fn every_variable_the_code_reads_is_in_the_readme_table() {
    let documented = readme_table_variables(&read("README.md"));
    let read_by_code = variables_read();
    assert!(read_by_code.len() > 20, "the variables were found: {read_by_code:?}");
    let missing: Vec<&String> = read_by_code.difference(&documented).collect();
    assert!(missing.is_empty(), "variables the code reads that the README's table lacks: {missing:?}");
}

#[test]
fn the_checks_see_a_parameter_added_without_readme_text() {
    let template =
        read("template.yaml").replacen("\nParameters:\n", "\nParameters:\n  BrandNewKnob:\n    Type: String\n", 1);
    let readme = read("README.md");
    assert!(parameters(&template).contains(&"BrandNewKnob".to_owned()));
    assert!(!readme.contains("`BrandNewKnob`"));
}
