//! The timeline as a static SVG picture: what Perfetto shows, drawn once,
//! readable in a browser or a document without any viewer.
//!
//! ```text
//!            title, and what the trace lost
//!            |0 µs      |50 µs     |100 µs       time axis, grid lines
//! CPU 0      [running init      ][IPI]  ...      one row per track: spans in
//! CPU 1         [idle    ][call: flush]          lanes by depth, instants as
//! waits of … [shootdown: 4 pages (spin) ]        marks on top, flows as arrows
//!            legend: a box per colour
//! ```
//!
//! A long trace has far more spans than the picture has pixels, so spans
//! and marks narrower than a pixel are merged with their neighbours (a
//! merged box says how many it holds), and arrows that would land on the
//! same pixels are drawn once: the file grows with the picture's width, not
//! with the trace. A [`Window`] draws only part of the trace.
//!
//! The SVG is written by hand: it is text, and every piece of text from the
//! trace goes through [`escape`].

mod rows;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::Window;
use super::timeline::{Look, Timeline};

/// Left of the plot: the track names, in a column as wide as the longest
/// needs, within these bounds (a longer name is cut, whole in its tooltip).
const LABEL_WIDTH: (f64, f64) = (120.0, 420.0);
/// About how wide a character of the 11 px labels is.
const LABEL_CHAR_WIDTH: f64 = 6.5;
/// The plot's width in pixels.
const PLOT_WIDTH: f64 = 1400.0;
const RIGHT_MARGIN: f64 = 20.0;
const TITLE_HEIGHT: f64 = 56.0;
const AXIS_HEIGHT: f64 = 24.0;
/// Per nesting level in a row.
const LANE_HEIGHT: f64 = 14.0;
/// The strip above a row's spans where its instants are marked.
const MARK_HEIGHT: f64 = 6.0;
const ROW_GAP: f64 = 6.0;
const LEGEND_ROW: f64 = 18.0;

/// Every look, in legend order, with its colour and what it means.
const LOOKS: [(Look, &str, &str); 12] = [
    (Look::Running, "#9ccc65", "running a thread"),
    (Look::Idle, "#e0e0e0", "idle thread"),
    (Look::Interrupt, "#ffa726", "interrupt handler (IPI)"),
    (Look::Tick, "#90a4ae", "timer tick"),
    (Look::Nmi, "#e53935", "NMI"),
    (Look::Call, "#ab47bc", "cross-CPU call"),
    (Look::BringUp, "#4fc3f7", "bring-up phase"),
    (Look::Shootdown, "#ffd54f", "TLB shootdown"),
    (Look::Wait, "#f06292", "waiting for a call's targets"),
    (Look::OffCpu, "#8d6e63", "waiter off CPU"),
    (Look::PreemptOff, "#7986cb", "preemption off"),
    (Look::Panic, "#b71c1c", "panic report"),
];

/// The colours of instants, by the kernel category of their event.
const MARK_COLOURS: [(&str, &str); 5] = [
    ("smp", "#01579b"),
    ("ipi", "#e65100"),
    ("tlb", "#5d4037"),
    ("sched", "#1b5e20"),
    ("panic", "#b71c1c"),
];

fn colour(look: Look) -> &'static str {
    LOOKS.iter().find(|(l, _, _)| *l == look).map_or("#bdbdbd", |(_, colour, _)| colour)
}

fn mark_colour(cat: &str) -> &'static str {
    MARK_COLOURS.iter().find(|(c, _)| *c == cat).map_or("#424242", |(_, colour)| colour)
}

/// Makes text safe inside an XML element or attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // XML 1.0 allows no other control characters, even escaped.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => escaped.push('?'),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Whether the picture of `from..to` shows something from `start` to `end`.
fn shows(from: u64, to: u64, start: u64, end: u64) -> bool {
    end >= from && start < to
}

/// Where things go: the time range shown and each row's place.
struct Layout {
    /// Where the plot starts, after the track names.
    label_width: f64,
    from: u64,
    to: u64,
    /// Pixels per ns.
    scale: f64,
    /// tid -> (top of the row, lanes).
    rows: BTreeMap<u64, (f64, usize)>,
    plot_top: f64,
    plot_bottom: f64,
}

impl Layout {
    fn new(timeline: &Timeline, window: Option<Window>) -> Layout {
        let (from, to) = match window {
            Some(window) => (window.from_ns, window.to_ns),
            None => (timeline.start_ns, timeline.end_ns),
        };
        let to = to.max(from + 1);
        let mut lanes: BTreeMap<u64, usize> = BTreeMap::new();
        for span in timeline.spans.iter().filter(|s| shows(from, to, s.start, s.end)) {
            let lane = lanes.entry(span.tid).or_default();
            *lane = (*lane).max(span.depth + 1);
        }
        let plot_top = TITLE_HEIGHT + AXIS_HEIGHT;
        let mut y = plot_top + ROW_GAP;
        let mut rows = BTreeMap::new();
        let mut longest = 0;
        for track in &timeline.tracks {
            let is_cpu = track.name.starts_with("CPU ") && !track.name.ends_with("preempt-off");
            let track_lanes = lanes.get(&track.tid).copied().unwrap_or(0);
            // A CPU always has a row; another track only if it shows something here.
            if track_lanes == 0 && !is_cpu {
                continue;
            }
            rows.insert(track.tid, (y, track_lanes.max(1)));
            longest = longest.max(track.name.chars().count());
            y += MARK_HEIGHT + LANE_HEIGHT * track_lanes.max(1) as f64 + ROW_GAP;
        }
        let scale = PLOT_WIDTH / (to - from) as f64;
        let (narrowest, widest) = LABEL_WIDTH;
        let label_width = (longest as f64 * LABEL_CHAR_WIDTH + 20.0).clamp(narrowest, widest);
        Layout { label_width, from, to, scale, rows, plot_top, plot_bottom: y }
    }

    fn shows(&self, start: u64, end: u64) -> bool {
        shows(self.from, self.to, start, end)
    }

    fn x(&self, ns: u64) -> f64 {
        self.label_width + (ns.clamp(self.from, self.to) - self.from) as f64 * self.scale
    }

    /// The top of a row's lane `depth`.
    fn lane_top(&self, tid: u64, depth: usize) -> Option<f64> {
        self.rows.get(&tid).map(|(top, _)| top + MARK_HEIGHT + LANE_HEIGHT * depth as f64)
    }

    fn width(&self) -> f64 {
        self.label_width + PLOT_WIDTH + RIGHT_MARGIN
    }
}

/// The picture. `title` heads it (the runner gives the event count and what
/// was lost); `window` limits it to part of the trace.
pub fn to_svg(timeline: &Timeline, title: &str, window: Option<Window>) -> String {
    let layout = Layout::new(timeline, window);
    let legend_top = layout.plot_bottom + 16.0;
    let height = legend_top + LEGEND_ROW * 3.0 + 10.0;
    let mut svg = String::new();
    let width = layout.width();
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="10">"#
    );
    svg.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 6 6\" refX=\"6\" refY=\"3\" markerWidth=\"6\" \
         markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L6,3 L0,6 z\" fill=\"#37474f\"/>\
         </marker></defs>\n",
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let shown = format!("{} to {}", time_label(layout.from), time_label(layout.to));
    let _ = writeln!(
        svg,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">{}</text><text x="10" y="42" font-size="11">shown: {}</text>"#,
        escape(title),
        escape(&shown)
    );
    axis(&mut svg, &layout);
    track_labels(&mut svg, &layout, timeline);
    let looks = rows::spans(&mut svg, &layout, timeline);
    let cats = rows::marks(&mut svg, &layout, timeline);
    rows::flows(&mut svg, &layout, timeline);
    legend(&mut svg, legend_top, &looks, &cats);
    svg.push_str("</svg>\n");
    svg
}

/// A time for a label, in the unit that suits it.
fn time_label(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.3} µs", ns as f64 / 1e3),
        _ => format!("{:.3} ms", ns as f64 / 1e6),
    }
}

/// A step of 1, 2 or 5 times a power of ten that cuts `range` ns into at most
/// about ten pieces.
fn tick_step(range: u64) -> u64 {
    let mut step = 1;
    loop {
        for factor in [1, 2, 5] {
            if range / (step * factor) <= 10 {
                return step * factor;
            }
        }
        step *= 10;
    }
}

/// A tick's label: in the unit that suits the axis's end (`to`), with as
/// many decimals as the step needs.
fn tick_label(ns: u64, step: u64, to: u64) -> String {
    let (unit, per) = match to {
        0..1_000 => ("ns", 1),
        1_000..1_000_000 => ("µs", 1_000),
        _ => ("ms", 1_000_000),
    };
    let decimals = (per as f64 / step as f64).log10().ceil().max(0.0) as usize;
    format!("{:.*} {unit}", decimals, ns as f64 / per as f64)
}

fn axis(svg: &mut String, layout: &Layout) {
    let step = tick_step(layout.to - layout.from);
    let y = layout.plot_top;
    let _ = writeln!(
        svg,
        r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#424242"/>"##,
        layout.label_width,
        layout.label_width + PLOT_WIDTH
    );
    let mut tick = layout.from.div_ceil(step) * step;
    while tick <= layout.to {
        let x = layout.x(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#eeeeee"/><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{y:.1}" stroke="#424242"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y,
            layout.plot_bottom,
            y - 4.0,
            y - 7.0,
            escape(&tick_label(tick, step, layout.to))
        );
        tick += step;
    }
}

fn track_labels(svg: &mut String, layout: &Layout, timeline: &Timeline) {
    let room = ((layout.label_width - 20.0) / LABEL_CHAR_WIDTH) as usize;
    for (tid, (top, lanes)) in &layout.rows {
        let name = timeline.track_name(*tid).unwrap_or("?");
        let middle = top + MARK_HEIGHT + LANE_HEIGHT * *lanes as f64 / 2.0 + 4.0;
        let shown = match name.chars().count() > room {
            true => format!("{}…", name.chars().take(room - 1).collect::<String>()),
            false => name.to_string(),
        };
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{middle:.1}" text-anchor="end" font-size="11">{}<title>{}</title></text>"#,
            layout.label_width - 8.0,
            escape(&shown),
            escape(name)
        );
    }
}

/// A box per colour that is in the picture, then the marks and the arrow.
fn legend(svg: &mut String, top: f64, looks: &BTreeSet<Look>, cats: &BTreeSet<&str>) {
    let _ = writeln!(svg, r#"<text x="10" y="{:.1}" font-weight="bold">legend</text>"#, top + 10.0);
    let mut x = 70.0;
    for (look, colour, meaning) in LOOKS.iter().filter(|(look, _, _)| looks.contains(look)) {
        let _ = writeln!(
            svg,
            r##"<rect x="{x:.1}" y="{:.1}" width="12" height="10" fill="{colour}" stroke="#616161" stroke-width="0.5"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            top + 1.0,
            x + 16.0,
            top + 10.0,
            escape(meaning)
        );
        let _ = look;
        x += 24.0 + 6.0 * meaning.chars().count() as f64;
    }
    let y = top + LEGEND_ROW;
    let _ = writeln!(svg, r#"<text x="70" y="{:.1}">marks (events at one time):</text>"#, y + 10.0);
    let mut x = 220.0;
    for (cat, colour) in MARK_COLOURS.iter().filter(|(cat, _)| cats.contains(cat)) {
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="2" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}">{cat}</text>"#,
            y + 1.0,
            x + 6.0,
            y + 10.0
        );
        x += 60.0;
    }
    let y = top + 2.0 * LEGEND_ROW;
    let _ = writeln!(
        svg,
        r##"<line x1="70" y1="{:.1}" x2="100" y2="{:.1}" stroke="#37474f" stroke-width="0.7" marker-end="url(#arrow)"/><text x="106" y="{:.1}">an IPI or a cross-CPU call, from the sender to the handler that took it (one of those a few pixels apart); boxes and marks under a pixel wide are merged (their tooltip counts them)</text>"##,
        y + 6.0,
        y + 6.0,
        y + 10.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_labelled_in_the_axis_unit() {
        assert_eq!(tick_step(3000), 500);
        assert_eq!(tick_step(20_000_000), 2_000_000);
        assert_eq!(tick_step(2000), 200);
        assert_eq!(tick_step(7), 1);
        assert_eq!(tick_label(500, 100, 900), "500 ns");
        assert_eq!(tick_label(2500, 500, 3000), "2.5 µs");
        assert_eq!(tick_label(10_000_000, 2_000_000, 20_000_000), "10 ms");
        assert_eq!(tick_label(1_000_200, 200, 1_002_000), "1.0002 ms");
    }

    #[test]
    fn escaping_leaves_no_markup_and_no_control_characters() {
        assert_eq!(escape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
        assert_eq!(escape("bell\u{7}tab\t"), "bell?tab\t");
    }
}
