//! Sequence positions as the archive holds them. Sequences are not transactional: the
//! baseline's snapshot does not freeze them, and pg_dump reads them at its own moment, so on a
//! busy database the two reads differ. The baseline therefore takes each sequence's position
//! from the archive's own `SEQUENCE SET` entries, which are exactly what a restore sets.

use std::{collections::BTreeMap, path::Path};

use crate::backup::{
    pgtools::{run_to_end, PgTools},
    BackupError,
};

use super::Baseline;

/// Where pg_restore reads the archive from.
#[derive(Clone, Copy)]
pub enum ArchiveSource<'a> {
    /// A staged archive file.
    File(&'a Path),
    /// The archive's first bytes, on pg_restore's stdin: the table of contents, where every
    /// SEQUENCE SET entry is, comes first, and neither pass reads past it. Fails when they end
    /// inside the table of contents.
    Head(&'a [u8]),
}

/// Each sequence's position in the archive, by quoted qualified name: its value, or `unset`
/// for one never called (restored with is_called false). The selection list pg_restore's
/// second pass takes is written in `scratch` (and removed). Blocking.
pub fn archived_positions(
    tools: &PgTools,
    archive: ArchiveSource<'_>,
    scratch: &Path,
) -> Result<BTreeMap<String, String>, BackupError> {
    let listing = read_archive(tools, &["--list".into()], archive)?;
    let entries: String = listing
        .lines()
        .filter(|line| line.contains(" SEQUENCE SET "))
        .map(|line| format!("{line}\n"))
        .collect();
    if entries.is_empty() {
        return Ok(BTreeMap::new());
    }
    let (mut list, list_path) = crate::backup::store::private_copy(scratch)?;
    let written = std::io::Write::write_all(&mut list, entries.as_bytes()).map_err(BackupError::io(&list_path));
    let script = written.and_then(|_| {
        read_archive(
            tools,
            &[format!("--use-list={}", list_path.display()), "--file=-".into()],
            archive,
        )
    });
    let _ = std::fs::remove_file(&list_path);
    Ok(parse_setvals(&script?))
}

fn read_archive(tools: &PgTools, args: &[String], archive: ArchiveSource<'_>) -> Result<String, BackupError> {
    match archive {
        ArchiveSource::File(path) => run_pg_restore(tools, args, path),
        ArchiveSource::Head(head) => pg_restore_fed(tools, args, head),
    }
}

/// pg_restore with `args`, the archive bytes `input` on its stdin, to its stdout. pg_restore
/// stops reading once it has what it needs: the pipe closing then is not an error.
fn pg_restore_fed(tools: &PgTools, args: &[String], input: &[u8]) -> Result<String, BackupError> {
    let what = "pg_restore (reading the archive's sequence positions)";
    let mut child = tools
        .command("pg_restore")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(BackupError::spawn("pg_restore"))?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let output = std::thread::scope(|scope| {
        scope.spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, input);
        });
        child.wait_with_output()
    })
    .map_err(BackupError::spawn("pg_restore"))?;
    if !output.status.success() {
        return Err(BackupError::Tool {
            tool: what,
            status: output.status.to_string(),
            stderr: crate::backup::pgtools::stderr_tail(&output.stderr, 2000),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn run_pg_restore(tools: &PgTools, args: &[String], archive: &Path) -> Result<String, BackupError> {
    let mut command = tools.command("pg_restore");
    command.args(args).arg(archive);
    let stdout = run_to_end(command, "pg_restore (reading the archive's sequence positions)")?;
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// `SELECT pg_catalog.setval('public."Odd ""seq"""', 1042, true);` lines to positions.
pub fn parse_setvals(script: &str) -> BTreeMap<String, String> {
    let mut positions = BTreeMap::new();
    for line in script.lines() {
        let Some(rest) = line.trim().strip_prefix("SELECT pg_catalog.setval('") else {
            continue;
        };
        // The name is a string literal: '' stands for one quote, and it ends at a lone quote.
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, next)| *next == '\'') {
                    chars.next();
                    name.push('\'');
                    continue;
                }
                end = Some(at + 1);
                break;
            }
            name.push(c);
        }
        let Some(end) = end else { continue };
        let arguments: Vec<&str> = rest[end..]
            .trim_start_matches(',')
            .trim_end_matches(';')
            .trim_end_matches(')')
            .split(',')
            .map(str::trim)
            .collect();
        if let [value, called] = arguments[..] {
            let position = if called == "true" {
                value.to_owned()
            } else {
                "unset".to_owned()
            };
            positions.insert(name, position);
        }
    }
    positions
}

/// Replaces the `last_value=` of each sequence the archive positions; the rest of each
/// description (increment, bounds, cycle) is the catalog's, read in the snapshot.
pub fn apply(baseline: &mut Baseline, positions: &BTreeMap<String, String>) {
    for (name, position) in positions {
        if let Some(description) = baseline.objects.get_mut(&format!("sequence {name}")) {
            *description = description
                .split(' ')
                .map(|word| {
                    if word.starts_with("last_value=") {
                        format!("last_value={position}")
                    } else {
                        word.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setval_lines_give_positions_with_quoted_names() {
        let script = "--\n-- Name: s; Type: SEQUENCE SET\n--\n\n\
            SELECT pg_catalog.setval('public.invoice_number_seq', 1042, true);\n\
            SELECT pg_catalog.setval('public.\"Odd ''seq\"', 1, false);\n\
            SELECT pg_catalog.setval('\"Sch\".\"a,b\"', 7, true);\n";
        let positions = parse_setvals(script);
        assert_eq!(
            positions.into_iter().collect::<Vec<_>>(),
            [
                ("\"Sch\".\"a,b\"".to_owned(), "7".to_owned()),
                ("public.\"Odd 'seq\"".to_owned(), "unset".to_owned()),
                ("public.invoice_number_seq".to_owned(), "1042".to_owned()),
            ]
        );
    }

    #[test]
    fn only_last_value_is_replaced() {
        let mut baseline = Baseline {
            tables: BTreeMap::new(),
            objects: BTreeMap::from([(
                "sequence public.s".to_owned(),
                "last_value=5 increment=1 min=1 max=9 cycle=false".to_owned(),
            )]),
            taken_ms: 0,
        };
        apply(
            &mut baseline,
            &BTreeMap::from([("public.s".to_owned(), "9".to_owned())]),
        );
        assert_eq!(
            baseline.objects["sequence public.s"],
            "last_value=9 increment=1 min=1 max=9 cycle=false"
        );
    }
}
