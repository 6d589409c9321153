//! Event-time timers fire in timestamp order, exactly when the watermark
//! passes them, on out-of-order input, whatever the batch boundaries and
//! parallelism — checked against a direct simulation of Flink's rules
//! (punctuated bounded-out-of-orderness watermarks, timers firing before
//! the next event once the watermark reaches them).

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use weir_core::spec::Spec;
use weir_runtime::RunOptions;
use weir_tests::component;
use weir_wasm::WasmRuntime;

const OUT_OF_ORDERNESS: i64 = 50;
const DELAY: i64 = 30;

/// Out-of-order events with unique timestamps over 5 keys.
fn input() -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> =
        (0..2000i64).map(|i| (format!("k{}", (i * 7) % 5), 1_000 + i * 10 + (i % 3))).collect();
    // Shuffle locally: swap pairs, and move some events 20 places later.
    for i in (0..v.len() - 1).step_by(2) {
        v.swap(i, i + 1);
    }
    for i in (0..v.len() - 20).step_by(97) {
        let e = v.remove(i);
        v.insert(i + 20, e);
    }
    v
}

fn simulate(events: &[(String, i64)]) -> Vec<Value> {
    let mut timers = BTreeSet::new();
    let (mut max_ts, mut wm) = (i64::MIN, i64::MIN);
    let mut out = Vec::new();
    let fire = |timers: &mut BTreeSet<(i64, String)>, wm: i64, out: &mut Vec<Value>| {
        while let Some((t, k)) = timers.first().cloned() {
            if t > wm {
                break;
            }
            timers.pop_first();
            out.push(json!({"k": k, "t": t, "wm": wm}));
        }
    };
    for (k, ts) in events {
        out.push(json!({"k": k, "e": ts}));
        timers.insert((ts + DELAY, k.clone()));
        if *ts > max_ts {
            max_ts = *ts;
            if ts - OUT_OF_ORDERNESS - 1 > wm {
                wm = ts - OUT_OF_ORDERNESS - 1;
                fire(&mut timers, wm, &mut out);
            }
        }
    }
    fire(&mut timers, i64::MAX, &mut out);
    out
}

fn run(dir: &Path, batch_size: usize, parallelism: u32) -> Vec<Value> {
    let events = input();
    let data: String = events.iter().map(|(k, ts)| format!("{}\n", json!({"key": k, "ts": ts}))).collect();
    std::fs::write(dir.join("events.jsonl"), data).unwrap();
    let spec = format!(
        "batch-size: {batch_size}\nparallelism: {parallelism}\n\
         sources:\n  - {{id: events, type: file, path: events.jsonl, format: jsonl, timestamp: ts, watermark: {{out-of-orderness-ms: {OUT_OF_ORDERNESS}}}}}\n\
         operators:\n  - {{id: log, kind: process, component: {}, input: events, key-by: key, config: {{delay: {DELAY}}}}}\n\
         sinks:\n  - {{id: out, type: file, path: out.jsonl, input: log}}\n",
        component("timer-log").display()
    );
    std::fs::write(dir.join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.join("p.yaml")).unwrap();
    let rt = WasmRuntime::new(None).unwrap();
    weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    std::fs::read_to_string(dir.join("out.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn timers_fire_in_event_time_order_between_events_on_out_of_order_input() {
    let dir = tempfile::tempdir().unwrap();
    let want = simulate(&input());
    assert!(want.iter().filter(|v| v.get("t").is_some()).count() == 2000);
    for batch_size in [1024, 7, 1] {
        assert_eq!(run(dir.path(), batch_size, 1), want, "batch size {batch_size}");
    }
}

#[test]
fn timers_keep_per_key_order_at_parallelism_two() {
    let dir = tempfile::tempdir().unwrap();
    // A subtask sees every watermark, but watermarks that arrive with no
    // event of its own in between merge into the last one, so a timer may
    // see a later `current_watermark` than at parallelism 1; where it fires
    // among the key's events is the same.
    let strip = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .map(|mut x| {
                if let Some(wm) = x.as_object_mut().and_then(|o| o.remove("wm")) {
                    assert!(
                        wm.as_i64().unwrap() >= x["t"].as_i64().unwrap(),
                        "timer fired before the watermark passed it: {x}"
                    );
                }
                x
            })
            .collect()
    };
    let got = strip(run(dir.path(), 64, 2));
    let want = strip(simulate(&input()));
    for k in 0..5 {
        let key = format!("k{k}");
        let of = |v: &Vec<Value>| v.iter().filter(|x| x["k"] == key.as_str()).cloned().collect::<Vec<_>>();
        let (g, w) = (of(&got), of(&want));
        let first = g.iter().zip(&w).position(|(a, b)| a != b);
        assert!(
            first.is_none() && g.len() == w.len(),
            "key {key}: first difference at {first:?}: got {:?}, want {:?}",
            first.map(|i| &g[i.saturating_sub(2)..(i + 3).min(g.len())]),
            first.map(|i| &w[i.saturating_sub(2)..(i + 3).min(w.len())])
        );
    }
}

#[test]
fn a_guests_log_lines_reach_the_task_log_tagged_with_the_subtask() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), "{\"key\": \"a\", \"ts\": 1}\n").unwrap();
    let spec = format!(
        "sources: [{{id: events, type: file, path: events.jsonl, format: jsonl, timestamp: ts}}]\n\
         operators: [{{id: log, kind: process, component: {}, input: events, key-by: key, config: {{delay: 5}}}}]\n\
         sinks: [{{id: out, type: file, path: out.jsonl, input: log}}]\n",
        component("timer-log").display()
    );
    std::fs::write(dir.path().join("p.yaml"), spec).unwrap();
    let out = weir_tests::weir(&["run", dir.path().join("p.yaml").to_str().unwrap()], &dir.path().join("cache"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[log[0]] timer-log opened with delay 5"), "{stderr}");
}

#[test]
fn processing_time_timers_fire_when_the_clock_passes_them() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "sources: [{{id: gen, type: generator, count: 20, keys: 4, value-size: 8, rate: 40}}]\n\
         operators: [{{id: log, kind: process, component: {}, input: gen, key-by: '@key', config: {{processing: true, delay: 50}}}}]\n\
         sinks: [{{id: out, type: file, path: out.jsonl, input: log}}]\n",
        component("timer-log").display()
    );
    std::fs::write(dir.path().join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.path().join("p.yaml")).unwrap();
    let rt = WasmRuntime::new(None).unwrap();
    weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    let out: Vec<Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.iter().filter(|v| v.get("e").is_some()).count(), 20);
    let fired: Vec<&Value> = out.iter().filter(|v| v.get("pt").is_some()).collect();
    // 20 events over ~0.5 s, timers 50 ms later: all but the last few fire
    // before the input ends (pending processing-time timers do not fire then).
    assert!(fired.len() >= 5, "only {} of 20 processing-time timers fired: {out:?}", fired.len());
    for t in fired {
        assert!(t["now"].as_i64().unwrap() >= t["pt"].as_i64().unwrap(), "fired before its time: {t}");
    }
}
