//! The SVG: well-formed XML (read by a real parser), the rows and legend a
//! reader needs, escaped text, and a size that does not grow with the trace.

use super::*;
use crate::trace::Window;
use crate::trace::format::{IRQ_BEGIN, IRQ_END, SWITCH, THREAD_NAME};
use crate::trace::svg::to_svg;

/// Parses `svg` as XML (the test fails if it is not) and returns its texts.
fn xml_texts(svg: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}"));
    assert_eq!(document.root_element().tag_name().name(), "svg");
    document.descendants().filter(|n| n.is_text()).map(|n| n.text().unwrap().to_string()).collect()
}

fn svg_of(events: &[E], cpus: u16, window: Option<Window>) -> String {
    let trace = decode(&stream(cpus, events)).unwrap();
    to_svg(&Timeline::build(&trace), "test trace", window)
}

#[test]
fn the_picture_has_rows_a_time_axis_arrows_and_a_legend() {
    let svg = svg_of(&stories::shootdown(), 4, None);
    let texts = xml_texts(&svg);
    let has = |text: &str| texts.iter().any(|t| t == text);
    for row in ["CPU 0", "CPU 3", "waits of tlb-demo (thread 7)", "CPU 2 preempt-off"] {
        assert!(has(row), "no row {row:?} in {texts:?}");
    }
    for meaning in ["TLB shootdown", "waiting for a call's targets", "waiter off CPU", "NMI"] {
        assert_eq!(has(meaning), meaning != "NMI", "legend entry {meaning:?}: {texts:?}");
    }
    assert!(has("test trace"));
    // 100 ns to 3000 ns: ticks every 500 ns, labelled in µs.
    assert!(has("0.5 µs") && has("2.5 µs"), "{texts:?}");
    let document = roxmltree::Document::parse(&svg).unwrap();
    let arrows = document.descendants().find(|n| n.attribute("marker-end").is_some()).unwrap();
    assert_eq!(arrows.children().filter(|n| n.has_tag_name("line")).count(), 4, "4 flows");
    assert!(texts.iter().any(|t| t.starts_with("shootdown: 4 pages (preempt) (")), "{texts:?}");
}

#[test]
fn text_from_the_trace_is_escaped() {
    let name = "<evil & \"quoted\" 'name'>";
    let events = [
        E::new(0, 0, THREAD_NAME).small(1).a(5).text(name),
        E::new(0, 10, SWITCH).small(1).a(1).b(5),
        E::new(0, 100_000, SWITCH).small(0).a(5).b(1).c(1),
    ];
    let texts = xml_texts(&svg_of(&events, 1, None));
    assert!(texts.iter().any(|t| t.starts_with(&format!("running {name} ("))), "{texts:?}");
}

#[test]
fn a_long_trace_stays_small() {
    // 100 000 interrupts of 50 ns, one every 200 ns: 20 ms on one CPU.
    let mut events = vec![E::new(0, 0, SWITCH).small(1).a(1).b(2)];
    for n in 0..100_000u64 {
        events.push(E::new(0, n * 200, IRQ_BEGIN).small(0xfd));
        events.push(E::new(0, n * 200 + 50, IRQ_END).small(0xfd));
    }
    let svg = svg_of(&events, 1, None);
    assert!(svg.len() < 100_000, "{} bytes", svg.len());
    let texts = xml_texts(&svg);
    assert!(texts.iter().any(|t| t.ends_with("spans, each under a pixel wide")));
    assert!(texts.iter().any(|t| t == "10 ms"), "ticks in ms: {texts:?}");
    // A window of 2 µs draws the few interrupts in it one by one, in ns.
    let window = Window { from_ns: 1_000_000, to_ns: 1_002_000 };
    let svg = svg_of(&events, 1, Some(window));
    let texts = xml_texts(&svg);
    let interrupts = texts.iter().filter(|t| t.starts_with("IPI 0xfd reschedule (50 ns)")).count();
    assert_eq!(interrupts, 10, "{texts:?}");
    assert!(texts.iter().any(|t| t == "1.0010 ms"), "{texts:?}");
}

#[test]
fn an_empty_trace_still_draws_its_cpus() {
    let trace = decode(&dump(super::reason::END_OF_RUN, 2, 0, &[])).unwrap();
    let texts = xml_texts(&to_svg(&Timeline::build(&trace), "empty", None));
    assert!(texts.iter().any(|t| t == "CPU 1"), "{texts:?}");
}

#[test]
fn long_track_names_are_cut_and_arrows_leaving_the_window_reach_its_edge() {
    let name = "a thread with a name far too long to fit in the label column of the picture";
    let mut events = stories::shootdown();
    events[0] = E::new(0, 100, THREAD_NAME).small(1).a(7).text(name);
    let svg = svg_of(&events, 4, Some(Window { from_ns: 1000, to_ns: 1050 }));
    let document = roxmltree::Document::parse(&svg).unwrap();
    let label = document
        .descendants()
        .find(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.starts_with("waits of")))
        .unwrap();
    assert!(label.text().unwrap().ends_with('…'), "{:?}", label.text());
    let title = label.children().find(|n| n.has_tag_name("title")).unwrap();
    assert_eq!(title.text(), Some(format!("waits of {name} (thread 7)").as_str()));
    // Every send is in the window, no handler is: four arrows to the right edge.
    let arrows = document.descendants().find(|n| n.attribute("marker-end").is_some()).unwrap();
    let ends: Vec<&str> = arrows.children().filter_map(|n| n.attribute("x2")).collect();
    assert_eq!(ends.len(), 4);
    assert!(ends.windows(2).all(|pair| pair[0] == pair[1]), "{ends:?}");
}
