//! What the baseline bench measures besides wall time: peak memory in a child run, CPU time,
//! and the medians and tables it prints.

use super::*;

/// Runs this binary again to hash `target` alone, so its peak RSS is the hashing's own.
pub(crate) fn memory_of_child(url: &str, target: &str) -> (u64, u64) {
    let out = Command::new(std::env::current_exe().expect("the bench binary's path"))
        .env(CHILD_TARGET, target)
        .env(CHILD_URL, url)
        .stdin(Stdio::null())
        .output()
        .expect("the bench binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the memory run for {target} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        stdout
            .split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the memory run's output: {stdout}"))
    };
    (field("rows="), field("peak_kib="))
}

/// The child side of `memory_of_child`: hashes `target` (a table, or `*<readers>` for the
/// whole baseline) and prints its row count and VmHWM.
pub(crate) fn measure_memory_here(target: &str, url: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let rows: u64 = runtime.block_on(async {
        let client = connect(url, "memory").await;
        let snapshot = tables::begin_snapshot(&client).await.expect("the snapshot opens");
        let Some(readers) = target.strip_prefix('*') else {
            return tables::table_content(&client, target)
                .await
                .expect("the table hashes")
                .rows;
        };
        let excluded = [EXCLUDED.to_owned()];
        let readers = readers.parse().expect("`*<readers>`");
        let contents = take(url, &client, &snapshot, &excluded, readers).await;
        contents.values().map(|content| content.rows).sum()
    });
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/self/status");
    println!("rows={rows} peak_kib={peak}");
}

/// This process's CPU time (user and system), its waited-for children's included (psql,
/// pg_dump), from /proc/self/stat in USER_HZ ticks (100 per second on Linux).
pub(crate) fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<u64> = stat[stat.rfind(')').expect("a comm field") + 2..]
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime and cstime are fields 14 to 17; the slice starts at field 3.
    Duration::from_millis(fields[11..15].iter().sum::<u64>() * 10)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub(crate) fn median_ms(spent: &[(Duration, Duration)]) -> f64 {
    median(spent.iter().map(|(wall, _)| wall.as_secs_f64() * 1000.0).collect())
}

pub(crate) fn median_cpu_s(spent: &[(Duration, Duration)]) -> f64 {
    median(spent.iter().map(|(_, cpu)| cpu.as_secs_f64()).collect())
}

pub(crate) fn range_ms(spent: &[(Duration, Duration)]) -> String {
    let ms = spent.iter().map(|(wall, _)| wall.as_secs_f64() * 1000.0);
    let (min, max) = ms.fold((f64::MAX, 0.0f64), |(lo, hi), t| (lo.min(t), hi.max(t)));
    format!("{min:.0}–{max:.0}")
}

pub(crate) fn print_times(times: &BTreeMap<Method, Vec<(Duration, Duration)>>, readers: Readers) {
    let reference = median_ms(&times[&Method::Copy]);
    println!("\n| method | runs | median ms | min–max ms | client CPU s (median) | median / reference (b) |");
    println!("|---|---|---|---|---|---|");
    for (method, spent) in times {
        let median = median_ms(spent);
        println!(
            "| {} | {} | {median:.0} | {} | {:.2} | {:.3} |",
            method.label(),
            spent.len(),
            range_ms(spent),
            median_cpu_s(spent),
            median / reference
        );
    }
    let seed = median_ms(&times[&Method::Seed]);
    let fastest_copy = [Method::Copy, Method::CopyOwnThread, Method::CopyPsql]
        .iter()
        .map(|method| median_ms(&times[method]))
        .fold(f64::MAX, f64::min);
    println!("\n| baseline | a / c (target ≥ 4) | c / b (target ≤ 1.1) | c / fastest COPY |\n|---|---|---|---|");
    for baseline_readers in [0, 1, readers] {
        let baseline = median_ms(&times[&Method::Baseline(baseline_readers)]);
        println!(
            "| {}. {} | {:.2} | {:.3} | {:.3} |",
            short(baseline_readers),
            describe(baseline_readers),
            seed / baseline,
            baseline / reference,
            baseline / fastest_copy
        );
    }
    // Round by round (the methods of one round ran back to back, so they met the same drift).
    let per_round = |over: Method, under: Method| -> String {
        let ratios = times[&over].iter().zip(&times[&under]);
        let ratios: Vec<String> = ratios
            .map(|(o, u)| format!("{:.2}", o.0.as_secs_f64() / u.0.as_secs_f64()))
            .collect();
        ratios.join(", ")
    };
    for baseline_readers in [0, 1, readers] {
        let baseline = Method::Baseline(baseline_readers);
        println!(
            "\n{} per round: a/c {}; c/b {}",
            short(baseline_readers),
            per_round(Method::Seed, baseline),
            per_round(baseline, Method::Copy)
        );
    }
}
