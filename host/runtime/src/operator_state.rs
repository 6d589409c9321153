//! Operator state on restore: which of the old subtasks' lists each new
//! subtask gets (Flink's round-robin even split and union).

use weir_wasm::{OperatorList, Redistribution};

/// The lists new subtask `s` of `parallelism` restores from `old`, every
/// old subtask's lists in subtask order. A list in union mode comes
/// whole to every subtask; one in even-split mode comes back to its own
/// subtask when the parallelism is unchanged, and otherwise as run `s`
/// of `parallelism` runs of nearly equal length (the first ones one
/// longer) over every old subtask's elements. Every list named in `old`
/// is handed over, empty when its run is.
pub(crate) fn redistribute(old: &[Vec<OperatorList>], s: u32, parallelism: u32) -> Result<Vec<OperatorList>, String> {
    let mut names: Vec<(&str, Redistribution)> = Vec::new();
    for l in old.iter().flatten() {
        match names.iter().find(|(n, _)| *n == l.name) {
            Some((_, mode)) if *mode != l.mode => {
                return Err(format!(
                    "its checkpointed operator list `{}` is even-split in one subtask and union in another; \
                     the checkpoint is damaged",
                    l.name
                ));
            }
            Some(_) => {}
            None => names.push((&l.name, l.mode)),
        }
    }
    let unchanged = old.len() == parallelism as usize;
    let mut out = Vec::with_capacity(names.len());
    for (name, mode) in names {
        let mut list = OperatorList::new(name, mode);
        let parts = old.iter().filter_map(|lists| lists.iter().find(|l| l.name == name));
        match mode {
            Redistribution::EvenSplit if unchanged => {
                if let Some(own) = old[s as usize].iter().find(|l| l.name == name) {
                    list = own.clone();
                }
            }
            Redistribution::EvenSplit => {
                let total: usize = parts.clone().map(OperatorList::len).sum();
                let (base, extra) = (total / parallelism as usize, total % parallelism as usize);
                let s = s as usize;
                let start = s * base + s.min(extra);
                let run = start..start + base + usize::from(s < extra);
                let elements = parts.flat_map(|l| (0..l.len()).map(move |i| l.element(i)));
                for e in elements.skip(run.start).take(run.len()) {
                    list.push(e)?;
                }
            }
            Redistribution::Union => {
                for part in parts {
                    for i in 0..part.len() {
                        list.push(part.element(i))?;
                    }
                }
            }
        }
        out.push(list);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(name: &str, mode: Redistribution, elements: &[&str]) -> OperatorList {
        let mut l = OperatorList::new(name, mode);
        for e in elements {
            l.push(e.as_bytes()).unwrap();
        }
        l
    }

    fn elements(l: &OperatorList) -> Vec<String> {
        (0..l.len()).map(|i| String::from_utf8(l.element(i).to_vec()).unwrap()).collect()
    }

    #[test]
    fn even_split_lists_are_cut_into_runs_and_union_lists_go_to_everyone() {
        use Redistribution::{EvenSplit, Union};
        let old = vec![
            vec![list("offsets", EvenSplit, &["a", "b", "c"]), list("seen", Union, &["x"])],
            vec![list("offsets", EvenSplit, &["d", "e"]), list("seen", Union, &["y"])],
        ];
        // 2 → 3: five elements in runs of 2, 2 and 1, in subtask order.
        let runs: Vec<Vec<String>> = (0..3).map(|s| elements(&redistribute(&old, s, 3).unwrap()[0])).collect();
        assert_eq!(runs, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        for s in 0..3 {
            assert_eq!(elements(&redistribute(&old, s, 3).unwrap()[1]), ["x", "y"], "union to subtask {s}");
        }
        // 2 → 1: everything, in order.
        assert_eq!(elements(&redistribute(&old, 0, 1).unwrap()[0]), ["a", "b", "c", "d", "e"]);
        // 2 → 2: each its own, even when the lengths differ.
        assert_eq!(elements(&redistribute(&old, 1, 2).unwrap()[0]), ["d", "e"]);
        // 2 → 7: the later subtasks get the list, empty.
        let last = redistribute(&old, 6, 7).unwrap();
        assert_eq!((last[0].name.as_str(), last[0].len()), ("offsets", 0));
    }

    #[test]
    fn a_list_only_some_subtasks_kept_and_a_mode_that_differs() {
        use Redistribution::{EvenSplit, Union};
        let old = vec![vec![], vec![list("buffer", EvenSplit, &["p", "q"])], vec![]];
        assert_eq!(elements(&redistribute(&old, 0, 1).unwrap()[0]), ["p", "q"]);
        assert!(redistribute(&old, 0, 3).unwrap()[0].is_empty(), "subtask 0 kept no list: it gets an empty one");
        let mixed = vec![vec![list("l", EvenSplit, &[])], vec![list("l", Union, &[])]];
        let e = redistribute(&mixed, 0, 2).unwrap_err();
        assert!(e.contains("`l` is even-split in one subtask and union in another"), "{e}");
        assert!(redistribute(&[], 0, 4).unwrap().is_empty(), "a fresh start has no lists");
    }
}
