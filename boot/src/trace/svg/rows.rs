//! Drawing inside the rows: spans as boxes in their lane (one lane per
//! nesting depth), instants as marks in the strip above, flows as arrows;
//! whatever is under a pixel merged with its neighbours, and arrows thinned
//! out where they would blacken the picture.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use serde_json::{Map, Value};

use super::{LANE_HEIGHT, Layout, MARK_HEIGHT, colour, escape, mark_colour, time_label};
use crate::trace::timeline::{Instant, Look, Span, Timeline};

/// Boxes narrower than a pixel, gathered into one.
struct Merged<'a> {
    first: &'a Span,
    x0: f64,
    x1: f64,
    top: f64,
    /// How many of each look, to colour the box after the most common.
    looks: BTreeMap<Look, usize>,
}

impl Merged<'_> {
    fn draw(&self, svg: &mut String) {
        let (look, _) = self.looks.iter().max_by_key(|(_, n)| **n).unwrap();
        let count: usize = self.looks.values().sum();
        let width = (self.x1 - self.x0).max(1.0);
        if count == 1 {
            return draw_box(svg, self.first, self.x0, self.x0 + width, self.top);
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="{}"><title>{count} spans, each under a pixel wide</title></rect>"#,
            self.x0,
            self.top + 1.0,
            LANE_HEIGHT - 2.0,
            colour(*look)
        );
    }
}

/// The spans of every row; returns the looks drawn, for the legend.
pub(super) fn spans(svg: &mut String, layout: &Layout, timeline: &Timeline) -> BTreeSet<Look> {
    let mut looks = BTreeSet::new();
    let mut pending: BTreeMap<(u64, usize), Merged> = BTreeMap::new();
    // The spans are by track, then start: each lane's boxes come left to right.
    for span in &timeline.spans {
        if !layout.shows(span.start, span.end) {
            continue;
        }
        let Some(top) = layout.lane_top(span.tid, span.depth) else { continue };
        looks.insert(span.look);
        let (x0, x1) = (layout.x(span.start), layout.x(span.end));
        let lane = (span.tid, span.depth);
        if x1 - x0 >= 1.0 {
            if let Some(merged) = pending.remove(&lane) {
                merged.draw(svg);
            }
            draw_box(svg, span, x0, x1, top);
            continue;
        }
        match pending.get_mut(&lane) {
            Some(merged) if x0 <= merged.x1 + 1.0 => {
                merged.x1 = merged.x1.max(x1);
                *merged.looks.entry(span.look).or_default() += 1;
            }
            _ => {
                let looks = BTreeMap::from([(span.look, 1)]);
                let merged = Merged { first: span, x0, x1, top, looks };
                if let Some(earlier) = pending.insert(lane, merged) {
                    earlier.draw(svg);
                }
            }
        }
    }
    for merged in pending.values() {
        merged.draw(svg);
    }
    looks
}

/// The text a box's tooltip shows: its name, length and args.
fn tooltip(name: &str, length: Option<u64>, args: &Map<String, Value>) -> String {
    let mut text = name.to_string();
    if let Some(length) = length {
        text += &format!(" ({})", time_label(length));
    }
    for (key, value) in args {
        let value = value.as_str().map_or_else(|| value.to_string(), str::to_string);
        text += &format!("\n{key}: {value}");
    }
    text
}

fn draw_box(svg: &mut String, span: &Span, x0: f64, x1: f64, top: f64) {
    let _ = write!(
        svg,
        r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" stroke="#616161" stroke-width="0.3"><title>{}</title></rect>"##,
        top + 1.0,
        x1 - x0,
        LANE_HEIGHT - 2.0,
        colour(span.look),
        escape(&tooltip(&span.name, Some(span.end - span.start), &span.args))
    );
    // A label where it fits, cut short where it does not (about 6 px a character).
    let room = ((x1 - x0 - 4.0) / 6.0) as usize;
    if room >= 3 {
        let mut label: String = span.name.chars().take(room).collect();
        if label.chars().count() < span.name.chars().count() {
            label.pop();
            label.push('…');
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="9">{}</text>"#,
            x0 + 2.0,
            top + LANE_HEIGHT - 4.0,
            escape(&label)
        );
    }
    svg.push('\n');
}

/// Marks closer than this (px) are one: a mark is 1.5 px wide, so they would
/// overlap anyway.
const MARK_MERGE: f64 = 3.0;

/// A mark, or several that would overlap.
struct Mark<'a> {
    x: f64,
    top: f64,
    first: &'a Instant,
    /// The names of the events under it, each once.
    names: BTreeSet<&'a str>,
    count: usize,
}

impl Mark<'_> {
    fn draw(&self, svg: &mut String) {
        let title = match self.count {
            1 => escape(&tooltip(&self.first.name, None, &self.first.args)),
            n => {
                let names: Vec<&str> = self.names.iter().copied().collect();
                escape(&format!("{n} events: {}", names.join(", ")))
            }
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="1.5" height="{MARK_HEIGHT:.1}" fill="{}"><title>{title}</title></rect>"#,
            self.x - 0.75,
            self.top,
            mark_colour(self.first.cat)
        );
    }
}

/// The instants of every row; returns the categories drawn, for the legend.
pub(super) fn marks<'a>(
    svg: &mut String,
    layout: &Layout,
    timeline: &'a Timeline,
) -> BTreeSet<&'a str> {
    let mut cats = BTreeSet::new();
    let mut pending: BTreeMap<u64, Mark> = BTreeMap::new();
    for instant in &timeline.instants {
        if !layout.shows(instant.ns, instant.ns) {
            continue;
        }
        let Some(&(top, _)) = layout.rows.get(&instant.tid) else { continue };
        cats.insert(instant.cat);
        let x = layout.x(instant.ns);
        match pending.get_mut(&instant.tid) {
            Some(mark) if (x - mark.x).abs() < MARK_MERGE => {
                mark.count += 1;
                mark.names.insert(&instant.name);
            }
            _ => {
                let names = BTreeSet::from([instant.name.as_str()]);
                let mark = Mark { x, top, first: instant, names, count: 1 };
                if let Some(earlier) = pending.insert(instant.tid, mark) {
                    earlier.draw(svg);
                }
            }
        }
    }
    for mark in pending.values() {
        mark.draw(svg);
    }
    cats
}

/// Arrows of one kind between the same two rows closer than this (px) are
/// drawn once.
const FLOW_SPACING: f64 = 6.0;

/// The flows with an end in the picture; of those of one kind that leave
/// one row for another within [`FLOW_SPACING`] of each other, the first.
pub(super) fn flows(svg: &mut String, layout: &Layout, timeline: &Timeline) {
    // Per (from row, to row, what): where the last arrow drawn starts.
    let mut last: HashMap<(u64, u64, &str), f64> = HashMap::new();
    // An arrow ends in the lane of the handler it points at: the deepest
    // span starting where it ends.
    let mut lanes: HashMap<(u64, u64), usize> = HashMap::new();
    for span in &timeline.spans {
        let lane = lanes.entry((span.tid, span.start)).or_default();
        *lane = (*lane).max(span.depth);
    }
    svg.push_str("<g stroke=\"#37474f\" stroke-width=\"0.7\" marker-end=\"url(#arrow)\">\n");
    let inside = |ns: u64| layout.shows(ns, ns);
    // An arrow with one end outside the picture is drawn to its edge.
    for flow in timeline.flows.iter().filter(|f| inside(f.from.1) || inside(f.to.1)) {
        let depth = lanes.get(&flow.to).copied().unwrap_or(0);
        let (Some(from_top), Some(to_top)) =
            (layout.lane_top(flow.from.0, 0), layout.lane_top(flow.to.0, depth))
        else {
            continue;
        };
        // From the sender's mark (the strip above its lanes) to the handler.
        let (x0, y0) = (layout.x(flow.from.1), from_top - MARK_HEIGHT / 2.0);
        let (x1, y1) = (layout.x(flow.to.1), to_top + LANE_HEIGHT / 2.0);
        let rows = (flow.from.0, flow.to.0, flow.name.as_str());
        if last.get(&rows).is_some_and(|&x| x0 - x < FLOW_SPACING) {
            continue;
        }
        last.insert(rows, x0);
        let _ = writeln!(svg, r#"<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}"/>"#);
    }
    svg.push_str("</g>\n");
}
