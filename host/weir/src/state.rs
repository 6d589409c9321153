//! `weir state PATH`: what a checkpoint or savepoint holds, read without
//! running its job; `--operator ID --key K`: one key's state, decoded.

use std::path::Path;

fn when(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn run(path: &Path, operator: Option<&str>, key: Option<&str>) -> Result<(), String> {
    let text = report(path, operator, key)?;
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // A reader that stopped (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("cannot write to stdout: {e}")),
        _ => Ok(()),
    }
}

fn report(path: &Path, operator: Option<&str>, key: Option<&str>) -> Result<String, String> {
    use std::fmt::Write;
    let mut out = String::new();
    macro_rules! println {
        ($($t:tt)*) => { let _ = writeln!(out, $($t)*); };
    }
    match (operator, key) {
        (Some(op), Some(key)) => {
            let k = weir_runtime::key_state(path, op, key.as_bytes())?;
            println!("operator `{op}`, key `{key}` (key group {})", k.group);
            if k.states.is_empty() {
                println!("  no state");
            }
            for (state, entries) in &k.states {
                println!("  {state}:");
                for e in entries {
                    println!("    {e}");
                }
            }
            Ok(out)
        }
        (None, None) => {
            let r = weir_runtime::inspect(path)?;
            println!(
                "{}: checkpoint {} of job `{}`, completed {}, {} key groups",
                r.path.display(),
                r.checkpoint,
                r.job,
                when(r.completed_at_ms),
                r.max_parallelism
            );
            for op in &r.operators {
                println!("{} ({}, parallelism {}): {} bytes", op.id, op.kind, op.parallelism, op.bytes);
                if op.in_flight > 0 {
                    println!("  in flight (unaligned checkpoint): {} records", op.in_flight);
                }
                for (state, groups) in &op.keys {
                    let total: u64 = groups.values().sum();
                    println!("  {state}: {total} keys in {} key groups", groups.len());
                    let per: Vec<String> = groups.iter().map(|(g, n)| format!("{g}:{n}")).collect();
                    // Key group:keys, wrapped.
                    for line in per.chunks(12) {
                        println!("    {}", line.join(" "));
                    }
                }
                for (name, list) in &op.lists {
                    let total: usize = list.elements.values().map(Vec::len).sum();
                    let mode = if list.union { "union" } else { "even-split" };
                    println!("  operator list `{name}` ({mode}): {total} elements");
                    for (s, elements) in &list.elements {
                        // The first few: a list can be long.
                        let more = elements.len().saturating_sub(10);
                        let tail = if more > 0 { format!(", … {more} more") } else { String::new() };
                        println!("    subtask {s}: [{}{tail}]", elements[..elements.len() - more].join(", "));
                    }
                }
            }
            Ok(out)
        }
        _ => Err("--operator and --key go together: name the operator and the key to show".into()),
    }
}
