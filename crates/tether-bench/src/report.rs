//! Turning the samples into markdown tables.

use crate::harness::{Cell, Measured};
use crate::idle::Growth;
use std::fmt::Write as _;

/// The runs of one library in one cell: messages per second, or an error.
pub(crate) type Samples = Vec<Result<f64, String>>;

/// The results of one side (server or client).
pub(crate) struct Side {
    /// Table title.
    pub(crate) title: String,
    /// One line under the title on how it was measured.
    pub(crate) note: String,
    /// Column labels of the libraries; the first is tether.
    pub(crate) libs: Vec<String>,
    /// Label of the neutral reference column (the ceiling).
    pub(crate) ceiling: String,
    /// `samples[cell][lib]`, with the ceiling as the last `lib`.
    pub(crate) samples: Vec<Vec<Samples>>,
}

/// Whether a column is one of tether's idioms (else a peer).
fn is_tether(label: &str) -> bool {
    label == "tether" || label.starts_with("tether ")
}

/// The median of the runs, or the first error.
fn median(s: &Samples) -> Result<Option<f64>, String> {
    let mut v = Vec::with_capacity(s.len());
    for r in s {
        match r {
            Ok(x) => v.push(*x),
            Err(e) => return Err(e.clone()),
        }
    }
    if v.is_empty() {
        return Ok(None);
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Ok(Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }))
}

/// `1.74M`, `340k`, `36.2k`, `1.42k`, `950`.
pub(crate) fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e5 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.2}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

impl Side {
    /// The markdown table, the per-cell verdicts, and any errors.
    pub(crate) fn table(&self, cells: &[Cell]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n\n{}\n", self.title, self.note);
        let n = self.libs.len();
        let mut head = String::from("| cell |");
        let mut rule = String::from("|---|");
        for l in self.libs.iter().chain([&self.ceiling]) {
            let _ = write!(head, " {l} |");
            rule.push_str("---:|");
        }
        // Ratios of each tether idiom to the best peer of the cell (the
        // fastest library not named tether) and to the ceiling.
        let tethers: Vec<usize> = (0..n).filter(|&i| is_tether(&self.libs[i])).collect();
        head.push_str(" best peer |");
        rule.push_str("---|");
        for &t in &tethers {
            let l = &self.libs[t];
            let _ = write!(head, " {l} / best peer | {l} / ceiling |");
            rule.push_str("---:|---:|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        let mut errors = Vec::new();
        let mut verdicts = Vec::new();
        for (ci, cell) in cells.iter().enumerate() {
            let meds: Vec<Option<f64>> = self.samples[ci]
                .iter()
                .enumerate()
                .map(|(li, s)| match median(s) {
                    Ok(m) => m,
                    Err(e) => {
                        let name = self.libs.get(li).unwrap_or(&self.ceiling);
                        errors.push(format!("- {}, {name}: {e}", cell.label()));
                        None
                    }
                })
                .collect();
            let mut row = format!("| {} |", cell.label());
            for (li, m) in meds.iter().enumerate() {
                let failed = median(&self.samples[ci][li]).is_err();
                let _ = write!(
                    row,
                    " {} |",
                    m.map_or_else(|| if failed { "ERR".into() } else { "-".into() }, rate)
                );
            }
            let best = (0..n)
                .filter(|&i| !is_tether(&self.libs[i]))
                .filter_map(|i| meds[i].map(|m| (i, m)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let _ = write!(
                row,
                " {} |",
                best.map_or("-", |(i, _)| self.libs[i].as_str())
            );
            let ratio = |t: Option<f64>, x: Option<f64>| match (t, x) {
                (Some(t), Some(x)) if x > 0.0 => format!("{:.2}x", t / x),
                _ => "-".into(),
            };
            for &t in &tethers {
                let _ = write!(
                    row,
                    " {} | {} |",
                    ratio(meds[t], best.map(|b| b.1)),
                    ratio(meds[t], meds.get(n).copied().flatten())
                );
            }
            let _ = writeln!(out, "{row}");
            verdicts.push(verdict(cell, &self.libs, &meds[..n]));
        }
        let _ = writeln!(
            out,
            "\nFastest library per cell (the ceiling column excluded):\n"
        );
        for v in verdicts {
            let _ = writeln!(out, "- {v}");
        }
        if !errors.is_empty() {
            let _ = writeln!(out, "\nErrors (a failed run shows as ERR):\n");
            for e in errors {
                let _ = writeln!(out, "{e}");
            }
        }
        out
    }

    /// Every run, for judging the noise.
    pub(crate) fn samples_table(&self, cells: &[Cell]) -> String {
        let mut out = format!("### {}: every run (messages/s)\n\n| cell | library | runs | spread |\n|---|---|---|---:|\n", self.title);
        for (ci, cell) in cells.iter().enumerate() {
            for (li, s) in self.samples[ci].iter().enumerate() {
                let name = self.libs.get(li).unwrap_or(&self.ceiling);
                let runs: Vec<String> = s
                    .iter()
                    .map(|r| r.as_ref().map_or_else(|_| "ERR".into(), |x| rate(*x)))
                    .collect();
                let ok: Vec<f64> = s.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
                let spread = match (
                    median(s),
                    ok.iter().copied().reduce(f64::min),
                    ok.iter().copied().reduce(f64::max),
                ) {
                    (Ok(Some(m)), Some(lo), Some(hi)) if m > 0.0 => {
                        format!("{:.0}%", (hi - lo) / m * 100.0)
                    }
                    _ => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {name} | {} | {spread} |",
                    cell.label(),
                    runs.join(", ")
                );
            }
        }
        out
    }
}

/// `16 B, 64x16: fastest X (1.74M/s); tether 1.20M/s = 0.69x of it (31% behind)`.
fn verdict(cell: &Cell, libs: &[String], meds: &[Option<f64>]) -> String {
    let mut ranked: Vec<(usize, f64)> = meds
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.map(|m| (i, m)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let label = cell.label();
    let Some(&(best, best_rate)) = ranked.first() else {
        return format!("{label}: no result");
    };
    let Some(tether) = meds[0] else {
        return format!(
            "{label}: fastest {} ({}/s); tether has no result",
            libs[best],
            rate(best_rate)
        );
    };
    if best == 0 {
        match ranked.get(1) {
            Some(&(second, r)) => format!(
                "{label}: fastest **tether** ({}/s), {:.2}x the next, {} ({}/s)",
                rate(tether),
                tether / r,
                libs[second],
                rate(r)
            ),
            None => format!("{label}: fastest **tether** ({}/s)", rate(tether)),
        }
    } else {
        format!(
            "{label}: fastest {} ({}/s); tether {}/s = {:.2}x of it ({:.0}% behind)",
            libs[best],
            rate(best_rate),
            rate(tether),
            tether / best_rate,
            (1.0 - tether / best_rate) * 100.0
        )
    }
}

/// The median of some values (of at least one).
fn median_of(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[m]),
        _ => Some((v[m - 1] + v[m]) / 2.0),
    }
}

/// The bytes on the wire per message in each direction, from the runs of
/// `runs[cell][lib]` (the ceiling last).
pub(crate) fn wire_table(
    cells: &[Cell],
    libs: &[String],
    ceiling: &str,
    runs: &[Vec<Vec<Result<Measured, String>>>],
) -> String {
    let mut out = String::from(
        "### Bytes on the wire per message\n\n\
         Frame bytes (headers included) per echoed message as the load generator counted them, \
         client to server / server to client (median over the runs), and in brackets how many times \
         smaller the server's echo is than the JSON it carries. Client to server depends only on the \
         window the server lets the client use (each message compressed on its own).\n\n",
    );
    let mut head = String::from("| cell |");
    let mut rule = String::from("|---|");
    for l in libs.iter().map(String::as_str).chain([ceiling]) {
        let _ = write!(head, " {l} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for (ci, cell) in cells.iter().enumerate() {
        let mut row = format!("| {} |", cell.label());
        for r in &runs[ci] {
            let ok: Vec<&Measured> = r.iter().filter_map(|x| x.as_ref().ok()).collect();
            let up = median_of(ok.iter().map(|m| m.up).collect());
            let down = median_of(ok.iter().map(|m| m.down).collect());
            match (up, down) {
                (Some(u), Some(d)) if d > 0.0 => {
                    let _ = write!(row, " {u:.0} / {d:.0} ({:.1}x) |", cell.payload as f64 / d);
                }
                _ => row.push_str(" - |"),
            }
        }
        let _ = writeln!(out, "{row}");
    }
    out
}

/// The idle-memory results: one row per server, one column per cell.
pub(crate) struct Idle {
    /// One paragraph under the title on how it was measured.
    pub(crate) note: String,
    /// Row labels (servers); the first is tether.
    pub(crate) libs: Vec<String>,
    /// Column labels (cells).
    pub(crate) cells: Vec<String>,
    /// `results[lib][cell]`; `None` where the server does not support the
    /// cell (permessage-deflate).
    pub(crate) results: Vec<Vec<Option<Result<Growth, String>>>>,
    /// Servers left out, with why (a peer not installed).
    pub(crate) not_run: Vec<String>,
}

/// KiB per connection with one decimal.
fn kib(g: &Growth) -> String {
    format!("{:.1}", g.per_conn())
}

impl Idle {
    /// The markdown table: KiB per connection and peer / tether for each
    /// cell, then any errors.
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "## Idle memory (server RSS growth per connection)\n\n{}\n\n",
            self.note
        );
        let mut head = String::from("| server |");
        let mut rule = String::from("|---|");
        for c in &self.cells {
            let _ = write!(head, " {c}: KiB/conn | peer / tether (>1: tether leaner) |");
            rule.push_str("---:|---:|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for (li, lib) in self.libs.iter().enumerate() {
            let mut row = format!("| {lib} |");
            for (ci, cell) in self.cells.iter().enumerate() {
                let (value, ratio) = match &self.results[li][ci] {
                    None => ("n/a".to_string(), String::new()),
                    Some(Err(e)) => {
                        errors.push(format!("- {lib}, {cell}: {e}"));
                        ("ERR".into(), "-".into())
                    }
                    Some(Ok(g)) => {
                        if g.sent_frames > 0 {
                            warnings.push(format!(
                                "- {lib}, {cell}: the server had sent frames (keepalive pings) to {} \
                                 of the connections by the end, so they were not all idle",
                                g.sent_frames
                            ));
                        }
                        let tether = match &self.results[0][ci] {
                            Some(Ok(t))
                                if li > 0 && self.libs[0] == "tether" && t.per_conn() > 0.0 =>
                            {
                                Some(t.per_conn())
                            }
                            _ => None,
                        };
                        let ratio = tether
                            .map_or_else(|| "-".into(), |t| format!("{:.2}x", g.per_conn() / t));
                        (kib(g), ratio)
                    }
                };
                let _ = write!(row, " {value} | {ratio} |");
            }
            let _ = writeln!(out, "{row}");
        }
        if !warnings.is_empty() {
            let _ = writeln!(out, "\nWarnings:\n");
            for w in warnings {
                let _ = writeln!(out, "{w}");
            }
        }
        if !self.not_run.is_empty() {
            let _ = writeln!(out, "\nLeft out:\n");
            for n in &self.not_run {
                let _ = writeln!(out, "- {n}");
            }
        }
        if !errors.is_empty() {
            let _ = writeln!(out, "\nErrors (a failed measurement shows as ERR):\n");
            for e in errors {
                let _ = writeln!(out, "{e}");
            }
        }
        out
    }

    /// Every measurement with its RSS readings.
    pub(crate) fn samples_table(&self) -> String {
        let mut out = String::from(
            "### Idle memory: every measurement\n\n\
             | server | cell | RSS after warm-up (KiB) | RSS after N more (KiB) | N | KiB/conn | opening the N (s) | connections sent a frame |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for (li, lib) in self.libs.iter().enumerate() {
            for (ci, cell) in self.cells.iter().enumerate() {
                match &self.results[li][ci] {
                    None => {}
                    Some(Err(_)) => {
                        let _ = writeln!(out, "| {lib} | {cell} | ERR | ERR | - | ERR | - | - |");
                    }
                    Some(Ok(g)) => {
                        let _ = writeln!(
                            out,
                            "| {lib} | {cell} | {} | {} | {} | {} | {:.1} | {} |",
                            g.baseline_kib,
                            g.after_kib,
                            g.conns,
                            kib(g),
                            g.open_secs,
                            g.sent_frames
                        );
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_the_reference() {
        assert_eq!(rate(1_740_000.0), "1.74M");
        assert_eq!(rate(340_400.0), "340k");
        assert_eq!(rate(36_240.0), "36.2k");
        assert_eq!(rate(1_420.0), "1.42k");
        assert_eq!(rate(950.2), "950");
    }

    #[test]
    fn idle_table_gives_kib_and_peer_over_tether() {
        let g = |after_kib| {
            Some(Ok(Growth {
                baseline_kib: 1_000,
                after_kib,
                conns: 1_000,
                open_secs: 0.5,
                sent_frames: 0,
            }))
        };
        let idle = Idle {
            note: "n".into(),
            libs: vec!["tether".into(), "peer".into(), "broken".into()],
            cells: vec!["plain".into(), "deflate".into()],
            results: vec![
                vec![g(11_000), g(301_000)],
                vec![g(6_000), None],
                vec![Some(Err("boom".into())), None],
            ],
            not_run: vec!["absent: not run (x)".into()],
        };
        let t = idle.table();
        assert!(t.contains("| tether | 10.0 | - | 300.0 | - |"), "{t}");
        assert!(t.contains("| peer | 5.0 | 0.50x | n/a |  |"), "{t}");
        assert!(t.contains("| broken | ERR | - | n/a |  |"), "{t}");
        assert!(t.contains("- broken, plain: boom"), "{t}");
        assert!(t.contains("- absent: not run (x)"), "{t}");
        let s = idle.samples_table();
        assert!(
            s.contains("| tether | deflate | 1000 | 301000 | 1000 | 300.0 | 0.5 | 0 |"),
            "{s}"
        );
    }

    #[test]
    fn table_gives_each_tether_idiom_against_best_peer_and_ceiling() {
        let cell = Cell {
            kind: crate::harness::Kind::Pattern,
            payload: 16,
            conns: 1,
            inflight: 1,
        };
        let side = Side {
            title: "t".into(),
            note: "n".into(),
            libs: vec![
                "tether".into(),
                "tether (split)".into(),
                "a".into(),
                "b".into(),
            ],
            ceiling: "raw".into(),
            samples: vec![vec![
                vec![Ok(400.0)],
                vec![Ok(100.0)],
                vec![Ok(200.0)],
                vec![Ok(250.0)],
                vec![Ok(1000.0)],
            ]],
        };
        let t = side.table(&[cell]);
        assert!(
            t.contains(
                "| 16 B, 1x1 | 400 | 100 | 200 | 250 | 1.00k | b | 1.60x | 0.40x | 0.40x | 0.10x |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| tether (split) / best peer | tether (split) / ceiling |"),
            "{t}"
        );
    }

    #[test]
    fn median_of_three_and_errors() {
        assert_eq!(median(&vec![Ok(3.0), Ok(1.0), Ok(2.0)]), Ok(Some(2.0)));
        assert!(median(&vec![Ok(3.0), Err("x".into())]).is_err());
    }
}
