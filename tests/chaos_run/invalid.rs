//! Invalid experiment files, one fixture per mistake
//! (tests/fixtures/experiments/bad-*.toml): each gives a message naming the
//! line and the field, exit code 2, and injects nothing. A fixture's first
//! line says what to expect: `# expect: LINE: TEXT`.

use super::*;

#[test]
fn each_invalid_file_is_refused_with_its_line_and_field_and_injects_nothing() {
    let lab = Lab::start();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/experiments");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("bad-"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 10, "{fixtures:?}");
    for fixture in fixtures {
        let text = std::fs::read_to_string(&fixture).unwrap();
        let expect =
            text.lines().next().unwrap().strip_prefix("# expect: ").expect("a first line `# expect: LINE: TEXT`");
        let (line, message) = expect.split_once(": ").unwrap();
        // Point the file at this lab's agent: if validation let it through,
        // it would inject into it.
        let text = text
            .replace("{agent}", &format!("http://{}", lab.agent.api))
            .replace("{query}", &format!("http://{}", lab.server.http));
        let path = lab.dir.path().join(fixture.file_name().unwrap());
        std::fs::write(&path, text).unwrap();
        let journal = path.with_extension("json");
        let out = seismo(&["chaos", "run", path.to_str().unwrap(), "--journal", journal.to_str().unwrap()]);
        let (code, stdout, stderr) = outcome(&out);
        let name = fixture.file_name().unwrap().to_str().unwrap();
        assert_eq!(code, 2, "{name}: exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        let at = format!("{}:{line}:", path.display());
        assert!(stderr.starts_with("invalid experiment: ") && stderr.contains(&at), "{name}: wanted {at}\n{stderr}");
        assert!(stderr.contains(message.trim()), "{name}: wanted {message:?}\n{stderr}");
        assert!(!journal.exists(), "{name}: an invalid file writes no journal");
        // `seismo chaos validate` says the same.
        let out = seismo(&["chaos", "validate", path.to_str().unwrap()]);
        assert_eq!(outcome(&out).0, 2, "{name}");
    }
    lab.assert_clean();
}
