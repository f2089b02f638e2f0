//! The figures of `bench-user`: reading the program's `BENCH user` lines, and
//! the table that sets the two kernels side by side.

use crate::panic_bench::median;

/// One measured value: a `BENCH user METRIC VALUE UNIT` line, or one of the
/// runner's own host figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub metric: String,
    pub value: f64,
    pub unit: String,
}

impl Figure {
    pub fn new(metric: &str, value: f64, unit: &str) -> Figure {
        Figure { metric: metric.into(), value, unit: unit.into() }
    }
}

/// The figures of one boot that ran the program to its end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    /// The program's, in the order it printed them.
    pub bench: Vec<Figure>,
    /// The runner's, measured on the host (times, QEMU's threads).
    pub host: Vec<Figure>,
}

const PREFIX: &str = "BENCH user";

/// The `BENCH user METRIC VALUE UNIT` lines in a boot's serial output, in
/// order, and a note for each line that starts like one but is not one
/// (another number of words, a VALUE that is not a finite number), or that
/// repeats a metric (the first value is kept). Other lines are not looked at.
pub fn parse_bench_lines(text: &str) -> (Vec<Figure>, Vec<String>) {
    let mut figures: Vec<Figure> = Vec::new();
    let mut notes = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with(PREFIX) {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let figure = match words[..] {
            ["BENCH", "user", metric, value, unit] => match value.parse::<f64>() {
                Ok(value) if value.is_finite() => Figure::new(metric, value, unit),
                _ => {
                    notes.push(format!("ignored {line:?}: {value:?} is not a number"));
                    continue;
                }
            },
            ["BENCH", "user", ..] => {
                notes.push(format!("ignored {line:?}: expected BENCH user METRIC VALUE UNIT"));
                continue;
            }
            _ => continue, // `BENCH usermode...`, `BENCH panic ...`: not this program's
        };
        if figures.iter().any(|f| f.metric == figure.metric) {
            notes.push(format!("ignored {line:?}: {} was already given", figure.metric));
            continue;
        }
        figures.push(figure);
    }
    (figures, notes)
}

/// A value as the table shows it: at most three decimals, none for a whole
/// number (`812`, `812.5`, `0.125`).
pub fn format_value(value: f64) -> String {
    let rounded = (value * 1000.0).round() / 1000.0;
    if rounded == 0.0 { "0".into() } else { format!("{rounded}") }
}

/// Ours divided by Linux's: two decimals below 10, one below 100, none above;
/// `-` when either is missing or Linux's is zero.
pub fn format_ratio(ours: Option<f64>, linux: Option<f64>) -> String {
    match (ours, linux) {
        (Some(ours), Some(linux)) if linux != 0.0 => {
            let ratio = ours / linux;
            match ratio.abs() {
                r if r < 10.0 => format!("{ratio:.2}"),
                r if r < 100.0 => format!("{ratio:.1}"),
                _ => format!("{ratio:.0}"),
            }
        }
        _ => "-".into(),
    }
}

/// One kernel's column: its median and every run's value (`-` for a run
/// that did not give this metric), or `-` when no run did.
fn cell(values: &[Option<f64>]) -> (String, Option<f64>) {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        return ("-".into(), None);
    }
    let middle = median(&present);
    if values.len() == 1 {
        return (format_value(middle), Some(middle));
    }
    let each: Vec<String> =
        values.iter().map(|v| v.map_or_else(|| "-".into(), format_value)).collect();
    (format!("{} ({})", format_value(middle), each.join(" ")), Some(middle))
}

/// The (metric, unit) rows of one section, in the order they first appear:
/// ours first, then those only Linux has.
fn rows(columns: [&[Run]; 2], section: fn(&Run) -> &[Figure]) -> Vec<(&str, &str)> {
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for figure in columns.iter().flat_map(|runs| runs.iter()).flat_map(section) {
        let key = (figure.metric.as_str(), figure.unit.as_str());
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    rows
}

/// The comparison: one row per metric and unit, the program's first, then
/// after a dividing line the runner's host figures. Columns: metric, unit,
/// this kernel's median over its runs with every run's value, Linux's the
/// same way, and the ratio of the medians, ours / Linux. `titles` name the
/// two kernels; `(N runs)` is added, N counting the runs that gave figures,
/// or `(not run)` for a kernel that was not asked for (None).
pub fn table(titles: [&str; 2], columns: [Option<&[Run]>; 2]) -> Vec<String> {
    let header = |i: usize| match columns[i] {
        Some(runs) => {
            let n = runs.len();
            format!("{} ({n} run{})", titles[i], if n == 1 { "" } else { "s" })
        }
        None => format!("{} (not run)", titles[i]),
    };
    let columns = columns.map(Option::unwrap_or_default);
    let mut lines: Vec<[String; 5]> =
        vec![["metric".into(), "unit".into(), header(0), header(1), "ratio".into()]];
    let divider = "-- measured by the runner on the host --";
    let sections: [fn(&Run) -> &[Figure]; 2] = [|run| &run.bench, |run| &run.host];
    let mut divider_at = None;
    for (index, section) in sections.into_iter().enumerate() {
        let rows = rows(columns, section);
        if index == 1 && !rows.is_empty() {
            divider_at = Some(lines.len());
        }
        for (metric, unit) in rows {
            let value = |run: &Run| {
                let mut figures = section(run).iter();
                figures.find(|f| f.metric == metric && f.unit == unit).map(|f| f.value)
            };
            let values = |runs: &[Run]| -> Vec<Option<f64>> { runs.iter().map(value).collect() };
            let (ours, ours_median) = cell(&values(columns[0]));
            let (linux, linux_median) = cell(&values(columns[1]));
            let ratio = format_ratio(ours_median, linux_median);
            lines.push([metric.into(), unit.into(), ours, linux, ratio]);
        }
    }
    let width = |i: usize| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..5).map(width).collect();
    let mut text: Vec<String> = lines
        .iter()
        .map(|line| {
            let padded: Vec<String> =
                line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            padded.join("  ").trim_end().to_string()
        })
        .collect();
    if let Some(at) = divider_at {
        text.insert(at, divider.into());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_are_read_and_malformed_ones_noted() {
        let output = "boot: something\r\n\
                      BENCH user getpid_ns 812 ns\r\n\
                      BENCH user pipe_us 12.5 us\n\
                      BENCH user getpid_ns 900 ns\n\
                      BENCH user broken 1\n\
                      BENCH user nan_value NaN ns\n\
                      BENCH user word_value fast ns\n\
                      BENCH panic mode=halt round=1\n\
                      BENCH username 1 2 3\n\
                      say BENCH user inside 1 ns\n\
                      \x20 BENCH user indented 3 ns  \n\
                      bench: done\r\n";
        let (figures, notes) = parse_bench_lines(output);
        assert_eq!(
            figures,
            [
                Figure::new("getpid_ns", 812.0, "ns"),
                Figure::new("pipe_us", 12.5, "us"),
                Figure::new("indented", 3.0, "ns")
            ]
        );
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(notes[0].contains("getpid_ns was already given"), "{notes:?}");
        assert!(notes[1].contains("expected BENCH user METRIC VALUE UNIT"), "{notes:?}");
        assert!(notes[2].contains("\"NaN\" is not a number"), "{notes:?}");
        assert!(notes[3].contains("\"fast\" is not a number"), "{notes:?}");
        assert_eq!(parse_bench_lines(""), (vec![], vec![]));
    }

    #[test]
    fn values_medians_and_ratios_are_formatted() {
        assert_eq!(format_value(812.0), "812");
        assert_eq!(format_value(812.5), "812.5");
        assert_eq!(format_value(0.1254), "0.125");
        assert_eq!(format_value(-0.0001), "0");
        assert_eq!(format_value(1e9), "1000000000");
        assert_eq!(format_ratio(Some(812.0), Some(95.0)), "8.55");
        assert_eq!(format_ratio(Some(95.0), Some(812.0)), "0.12");
        assert_eq!(format_ratio(Some(1200.0), Some(50.0)), "24.0");
        assert_eq!(format_ratio(Some(30000.0), Some(50.0)), "600");
        assert_eq!(format_ratio(Some(1.0), Some(0.0)), "-");
        assert_eq!(format_ratio(None, Some(1.0)), "-");
        assert_eq!(format_ratio(Some(1.0), None), "-");
        // The median of an even count is the mean of the middle two.
        assert_eq!(cell(&[Some(805.0), Some(830.0), Some(812.0)]).0, "812 (805 830 812)");
        assert_eq!(cell(&[Some(1.0), None, Some(2.0)]), ("1.5 (1 - 2)".into(), Some(1.5)));
        assert_eq!(cell(&[Some(7.0)]), ("7".into(), Some(7.0)));
        assert_eq!(cell(&[None, None]), ("-".into(), None));
        assert_eq!(cell(&[]), ("-".into(), None));
    }

    #[test]
    fn the_table_sets_the_kernels_side_by_side() {
        let run = |bench: &[(&str, f64, &str)], host: &[(&str, f64, &str)]| Run {
            bench: bench.iter().map(|&(m, v, u)| Figure::new(m, v, u)).collect(),
            host: host.iter().map(|&(m, v, u)| Figure::new(m, v, u)).collect(),
        };
        let ours = [
            run(&[("getpid_ns", 805.0, "ns"), ("only_ours", 1.0, "us")], &[("wall", 4000.0, "ms")]),
            run(&[("getpid_ns", 830.0, "ns")], &[("wall", 4100.0, "ms")]),
            run(&[("getpid_ns", 812.0, "ns")], &[("wall", 3900.0, "ms")]),
        ];
        let linux = [
            run(&[("getpid_ns", 95.0, "ns"), ("only_linux", 2.0, "ns")], &[("wall", 9000.0, "ms")]),
            run(&[("getpid_ns", 97.0, "ns")], &[("wall", 9100.0, "ms")]),
        ];
        let lines = table(["this kernel", "Linux 6.12.117"], [Some(&ours), Some(&linux)]);
        let expected = [
            "metric      unit  this kernel (3 runs)   Linux 6.12.117 (2 runs)  ratio",
            "getpid_ns   ns    812 (805 830 812)      96 (95 97)               8.46",
            "only_ours   us    1 (1 - -)              -                        -",
            "only_linux  ns    -                      2 (2 -)                  -",
            "-- measured by the runner on the host --",
            "wall        ms    4000 (4000 4100 3900)  9050 (9000 9100)         0.44",
        ];
        assert_eq!(lines, expected);
        // A kernel without runs: its column is all `-`, and the title says so.
        let lines = table(["this kernel", "Linux 6.12.117"], [Some(&[]), Some(&linux[..1])]);
        assert_eq!(
            lines[0],
            "metric      unit  this kernel (0 runs)  Linux 6.12.117 (1 run)  ratio"
        );
        assert_eq!(lines[1], "getpid_ns   ns    -                     95                      -");
        let lines = table(["this kernel", "Linux"], [Some(&ours[..1]), None]);
        assert_eq!(lines[0], "metric     unit  this kernel (1 run)  Linux (not run)  ratio");
    }
}
